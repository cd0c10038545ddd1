// The cryptography of docs/design/e2ee.md, on audited libraries only:
// HPKE (RFC 9180) from @hpke/*, Ed25519 from @noble/curves, ChaCha20-Poly1305
// from @noble/ciphers, SHA-256 and HKDF from @noble/hashes. Nothing here is
// a primitive of our own: this file lays out the bytes the contract names.
import { CipherSuite, DhkemX25519HkdfSha256, KemId } from "@hpke/core";
import { Dhkem } from "@hpke/common";
import { X25519, HkdfSha256 } from "@hpke/dhkem-x25519";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { extract, expand } from "@noble/hashes/hkdf.js";
import { b64, concat, compare, lp, random, u64, unb64, unb64n, unutf8, utf8 } from "./bytes.js";

/** SUITE is the only suite of version 1. */
export const SUITE = "x25519-hkdf-sha256-chacha20poly1305";

const u8 = (x: ArrayBufferLike | ArrayBufferView): Uint8Array =>
  ArrayBuffer.isView(x) ? new Uint8Array(x.buffer, x.byteOffset, x.byteLength) : new Uint8Array(x);
const ab = (x: Uint8Array): ArrayBuffer => x.slice().buffer as ArrayBuffer;

/**
 * Hkdf is hpke-js's HKDF-SHA256 (same labels and suite id) computed with
 * @noble/hashes instead of WebCrypto, so that HPKE runs where
 * crypto.subtle does not exist: React Native, and browser pages that are
 * not a secure context.
 */
class Hkdf extends HkdfSha256 {
  override async extract(salt: ArrayBufferLike | ArrayBufferView, ikm: ArrayBufferLike | ArrayBufferView): Promise<ArrayBuffer> {
    return ab(extract(sha256, u8(ikm), u8(salt)));
  }
  override async expand(prk: ArrayBufferLike | ArrayBufferView, info: ArrayBufferLike | ArrayBufferView, len: number): Promise<ArrayBuffer> {
    return ab(expand(sha256, u8(prk), u8(info), len));
  }
  override async extractAndExpand(salt: ArrayBufferLike | ArrayBufferView, ikm: ArrayBufferLike | ArrayBufferView, info: ArrayBufferLike | ArrayBufferView, len: number): Promise<ArrayBuffer> {
    return this.expand(await this.extract(salt, ikm), info, len);
  }
}

/**
 * Kem is DHKEM(X25519, HKDF-SHA256) (0x0020) on the HKDF above, with the
 * X25519 of @hpke/dhkem-x25519 (pure JavaScript) or of @hpke/core
 * (WebCrypto's X25519). @hpke/core does not export its X25519 primitive on
 * its own, so it is taken from its DHKEM (a pinned version; the RFC 9180
 * vectors run through both).
 */
class Kem extends Dhkem {
  constructor(native: boolean) {
    const kdf = new Hkdf();
    const prim = native ? new ((new DhkemX25519HkdfSha256() as any)._prim.constructor)(kdf) : new X25519(kdf);
    super(KemId.DhkemX25519HkdfSha256, prim, kdf);
    Object.assign(this, { id: KemId.DhkemX25519HkdfSha256, secretSize: 32, encSize: 32, publicKeySize: 32, privateKeySize: 32 });
  }
}

let suiteOnce: Promise<CipherSuite> | undefined;
let engine: "auto" | "js" | "webcrypto" = "auto";

/**
 * useEngine picks how X25519 runs: "webcrypto" (crypto.subtle,
 * about ten times faster: Node 20 and current browsers), "js" (the pure
 * JavaScript of @hpke/dhkem-x25519: React Native, old
 * browsers, pages that are not a secure context), or "auto" (the default:
 * webcrypto when crypto.subtle does X25519, else js). Both give the same
 * bytes; the tests run the RFC 9180 vectors through each.
 */
export function useEngine(e: "auto" | "js" | "webcrypto"): void {
  engine = e;
  suiteOnce = undefined;
}

async function subtleX25519(): Promise<boolean> {
  const subtle = (globalThis as any).crypto?.subtle;
  if (!subtle) return false;
  try {
    await subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
    return true;
  } catch {
    return false;
  }
}

/** suite is HPKE mode_base, KEM 0x0020, KDF 0x0001, AEAD 0x0003 (ChaCha20-Poly1305, always @hpke/chacha20poly1305). */
export function suite(): Promise<CipherSuite> {
  return (suiteOnce ??= (async () => {
    const native = engine === "webcrypto" || (engine === "auto" && (await subtleX25519()));
    return new CipherSuite({ kem: new Kem(native), kdf: new Hkdf(), aead: new Chacha20Poly1305() });
  })());
}

const text = (s: string) => utf8(s);
const INFO = text("parley-e2ee-v1/key");

// ---- keys

export interface KeyPair {
  /** 32 bytes: the Ed25519 seed, or the X25519 private scalar */
  priv: Uint8Array;
  pub: Uint8Array;
}

/** newIdentity makes an Ed25519 identity key. */
export function newIdentity(): KeyPair {
  const priv = random(32);
  return { priv, pub: ed25519.getPublicKey(priv) };
}

/** identityFromSeed is the identity key of a 32-byte seed (tests, vectors). */
export function identityFromSeed(seed: Uint8Array): KeyPair {
  return { priv: seed, pub: ed25519.getPublicKey(seed) };
}

/** newHpkeKey makes an X25519 key pair for HPKE. */
export async function newHpkeKey(): Promise<KeyPair> {
  const s = await suite();
  const kp = await s.kem.generateKeyPair();
  return { priv: u8(await s.kem.serializePrivateKey(kp.privateKey)), pub: u8(await s.kem.serializePublicKey(kp.publicKey)) };
}

/** hpkeKeyFromPrivate derives the public half of an X25519 private key. */
export function hpkeKeyFromPrivate(priv: Uint8Array): KeyPair {
  return { priv, pub: x25519.getPublicKey(priv) };
}

export const sign = (priv: Uint8Array, msg: Uint8Array): Uint8Array => ed25519.sign(msg, priv);

export function verify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return sig.length === 64 && pub.length === 32 && ed25519.verify(sig, msg, pub);
  } catch {
    return false;
  }
}

/** deviceKeyInput is what key_signature signs. */
export function deviceKeyInput(userId: string, deviceId: string, keyId: number, suiteName: string, hpkePublic: Uint8Array): Uint8Array {
  return concat(text("parley-e2ee-v1/device-key"), lp(userId), lp(deviceId), u64(keyId), lp(suiteName), lp(hpkePublic));
}

// ---- the envelope

export interface MessageIds {
  conversationId: string;
  senderUserId: string;
  senderDeviceId: string;
  clientMsgId: string;
}

/** contentAd is the ChaCha20-Poly1305 associated data of the content. */
export function contentAd(m: MessageIds): Uint8Array {
  return concat(text("parley-e2ee-v1/content"), lp(m.conversationId), lp(m.senderUserId), lp(m.senderDeviceId), lp(m.clientMsgId));
}

/** signatureInput is what the envelope's signature signs (ciphertext: nonce included). */
export function signatureInput(m: MessageIds, suiteName: string, ciphertext: Uint8Array): Uint8Array {
  return concat(text("parley-e2ee-v1/message"), lp(m.conversationId), lp(m.senderUserId), lp(m.senderDeviceId), lp(m.clientMsgId), lp(suiteName), lp(ciphertext));
}

/** keyAad is the HPKE aad of the content key sealed to one device. */
export function keyAad(conversationId: string, senderDeviceId: string, clientMsgId: string, deviceId: string, keyId: number): Uint8Array {
  return concat(lp(conversationId), lp(senderDeviceId), lp(clientMsgId), lp(deviceId), u64(keyId));
}

/** sealContent encrypts content under K: nonce(12) || ChaCha20-Poly1305(K, nonce, content, ad). */
export function sealContent(k: Uint8Array, content: Uint8Array, ad: Uint8Array, nonce = random(12)): Uint8Array {
  return concat(nonce, chacha20poly1305(k, nonce, ad).encrypt(content));
}

/** openContent reverses sealContent; it throws when the tag does not verify. */
export function openContent(k: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array): Uint8Array {
  if (ciphertext.length < 28) throw new Error("ciphertext too short");
  return chacha20poly1305(k, ciphertext.subarray(0, 12), ad).decrypt(ciphertext.subarray(12));
}

export interface WireKey {
  device_id: string;
  key_id: number;
  enc: string;
  sealed: string;
}

/**
 * sealKey seals K to one device's HPKE public key. ikmE fixes the
 * ephemeral key (RFC 9180's DeriveKeyPair input), for test vectors only.
 */
export async function sealKey(k: Uint8Array, pub: Uint8Array, aad: Uint8Array, ikmE?: Uint8Array): Promise<{ enc: Uint8Array; sealed: Uint8Array }> {
  const s = await suite();
  const recipientPublicKey = await s.kem.deserializePublicKey(ab(pub));
  const ctx = await s.createSenderContext({ recipientPublicKey, info: ab(INFO), ...(ikmE ? { ekm: ab(ikmE) } : {}) });
  return { enc: u8(ctx.enc), sealed: u8(await ctx.seal(ab(k), ab(aad))) };
}

/** imported caches a private key imported into the suite, per key bytes (the keystore keeps them). */
const imported = new WeakMap<Uint8Array, any>();

/** openKey opens a sealed K with this device's HPKE private key; it throws when it does not open. */
export async function openKey(priv: Uint8Array, enc: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  const s = await suite();
  let recipientKey = imported.get(priv);
  if (!recipientKey || recipientKey.s !== s) imported.set(priv, (recipientKey = { s, k: await s.kem.importKey("raw", ab(priv), false) }));
  recipientKey = recipientKey.k;
  const ctx = await s.createRecipientContext({ recipientKey, enc: ab(enc), info: ab(INFO) });
  const k = u8(await ctx.open(ab(sealed), ab(aad)));
  if (k.length !== 32) throw new Error("content key is not 32 bytes");
  return k;
}

export interface Recipient {
  deviceId: string;
  keyId: number;
  publicKey: Uint8Array;
}

/**
 * parallel maps fn over items, at most n at a time, results in order. With
 * WebCrypto's X25519 the seals overlap (about three times faster for 199
 * devices, docs/benchmarks.md); in pure JavaScript it changes little.
 */
export async function parallel<T, R>(items: T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run));
  return out;
}

/** sealKeys seals K to every recipient device (the `keys` of an envelope), 16 at a time. */
export async function sealKeys(k: Uint8Array, m: MessageIds, to: Recipient[]): Promise<WireKey[]> {
  return parallel(to, 16, async (d) => {
    const r = await sealKey(k, d.publicKey, keyAad(m.conversationId, m.senderDeviceId, m.clientMsgId, d.deviceId, d.keyId));
    return { device_id: d.deviceId, key_id: d.keyId, enc: b64(r.enc), sealed: b64(r.sealed) };
  });
}

/** decodeKey checks the lengths of a wire key entry (32-byte enc, 48-byte sealed). */
export function decodeKey(w: WireKey): { enc: Uint8Array; sealed: Uint8Array } {
  return { enc: unb64n(w.enc, 32), sealed: unb64n(w.sealed, 48) };
}

// ---- safety numbers

/** fingerprint of a user over the identity keys of all their keyed devices (sorted by bytes). */
export function fingerprint(userId: string, identityKeys: Uint8Array[]): Uint8Array {
  return sha256(fingerprintInput(userId, identityKeys));
}

/**
 * safetyNumber is the 60 digits two users compare: for each user in the
 * order of their ids, six 5-digit groups from the first 30 bytes of their
 * fingerprint, printed in groups of 5 separated by spaces.
 */
export function safetyNumber(a: { userId: string; fingerprint: Uint8Array }, b: { userId: string; fingerprint: Uint8Array }): string {
  const groups: string[] = [];
  for (const u of a.userId < b.userId ? [a, b] : [b, a])
    for (let i = 0; i < 30; i += 5) {
      let v = 0;
      for (let j = 0; j < 5; j++) v = v * 256 + u.fingerprint[i + j]!;
      groups.push(String(v % 100000).padStart(5, "0"));
    }
  return groups.join(" ");
}

// ---- opening a received envelope

/** The reasons a message stays undecryptable (docs/design/e2ee.md, "Receiving": the same strings as Go's). */
export type Reason = "no_key" | "bad_ciphertext" | "unknown_sender_device" | "bad_signature" | "bad_content";

/** An envelope as a device receives it (wire form). */
export interface ReceivedEnvelope {
  v: number;
  suite: string;
  ciphertext: string;
  signature: string;
  key?: WireKey;
}

const TYPES = ["text", "image", "video", "file"];
const fileKeyOk = (x: any) => {
  try {
    return typeof x.media_id === "string" && x.media_id !== "" && unb64n(x.key, 32) && typeof x.sha256 === "string" && /^[0-9a-f]{64}$/.test(x.sha256);
  } catch {
    return false;
  }
};

/**
 * parseContent checks a content's bytes (UTF-8 JSON, v = 1, a known type,
 * well-formed attachment keys and digests) and returns it, or undefined.
 * Unknown fields are kept (and ignored).
 */
export function parseContent(raw: Uint8Array): any {
  let c: any;
  try {
    c = JSON.parse(unutf8(raw));
  } catch {
    return undefined;
  }
  if (!c || typeof c !== "object" || c.v !== 1 || !TYPES.includes(c.type) || (c.body !== undefined && typeof c.body !== "string")) return undefined;
  if (c.attachments !== undefined) {
    if (!Array.isArray(c.attachments)) return undefined;
    for (const a of c.attachments) if (!a || !fileKeyOk(a) || (a.size !== undefined && !(a.size >= 0)) || (a.thumbnail && !fileKeyOk(a.thumbnail))) return undefined;
  }
  return c;
}

/** checkEnvelope decodes the envelope's common part; undefined when malformed. */
function checkEnvelope(env: ReceivedEnvelope | undefined): { ct: Uint8Array; sig: Uint8Array } | undefined {
  try {
    if (!env || env.v !== 1 || env.suite !== SUITE) return undefined;
    const ct = unb64(env.ciphertext);
    if (ct.length < 28) return undefined;
    return { ct, sig: unb64n(env.signature, 64) };
  } catch {
    return undefined;
  }
}

/**
 * openEnvelope opens a received envelope as device deviceId: K from its
 * key (privateKey(key_id) gives the HPKE private key this device holds for
 * that key_id), or ownK for a message this device sent; then the signature
 * under senderIdentity (undefined: the sender device is unknown), then the
 * content. It returns the content's bytes and parsed object, or the reason.
 */
export async function openEnvelope(
  ids: MessageIds,
  deviceId: string,
  env: ReceivedEnvelope | undefined,
  privateKey: (keyId: number) => Uint8Array | undefined,
  senderIdentity: Uint8Array | undefined,
  ownK?: Uint8Array,
): Promise<{ raw: Uint8Array; content: any; k: Uint8Array } | { reason: Reason }> {
  if (!env || (!ownK && !env.key)) return { reason: "no_key" };
  const e = checkEnvelope(env);
  if (!e) return { reason: "bad_ciphertext" };
  let k = ownK;
  if (!k) {
    const key = env.key!;
    let sealed: { enc: Uint8Array; sealed: Uint8Array };
    try {
      sealed = decodeKey(key);
    } catch {
      return { reason: "bad_ciphertext" };
    }
    if (key.device_id !== deviceId) return { reason: "no_key" };
    const priv = privateKey(key.key_id);
    if (!priv) return { reason: "no_key" };
    try {
      k = await openKey(priv, sealed.enc, sealed.sealed, keyAad(ids.conversationId, ids.senderDeviceId, ids.clientMsgId, deviceId, key.key_id));
    } catch {
      return { reason: "bad_ciphertext" };
    }
  }
  if (!senderIdentity) return { reason: "unknown_sender_device" };
  if (!verify(senderIdentity, signatureInput(ids, env.suite, e.ct), e.sig)) return { reason: "bad_signature" };
  let raw: Uint8Array;
  try {
    raw = openContent(k, e.ct, contentAd(ids));
  } catch {
    return { reason: "bad_ciphertext" };
  }
  const content = parseContent(raw);
  return content ? { raw, content, k } : { reason: "bad_content" };
}

/** fingerprintInput is what fingerprint hashes. */
export function fingerprintInput(userId: string, identityKeys: Uint8Array[]): Uint8Array {
  return concat(text("parley-e2ee-v1/fingerprint"), lp(userId), ...[...identityKeys].sort(compare).map((k) => lp(k)));
}
