// The shared envelope vectors (testdata/e2ee/envelope-vectors.json, made by
// the Go implementation from fixed inputs): the TypeScript module must
// reproduce every reproducible byte (key signatures, ad/aad, signature
// inputs, ciphertext, signature, fingerprints, safety numbers, file blobs),
// open what Go sealed, give the same reason for every broken envelope, and
// accept and refuse the same base64url.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import * as c from "../../dist/esm/e2ee/index.js";

const V = JSON.parse(readFileSync(new URL("../../../../testdata/e2ee/envelope-vectors.json", import.meta.url), "utf8"));
const hx = (b) => Buffer.from(b).toString("hex");
const text = (s) => new TextEncoder().encode(s);
const sha = (b) => createHash("sha256").update(b).digest("hex");
const device = (id) => V.devices.find((d) => d.device_id === id);

test("the vectors are for the suite and name the HPKE info", () => {
  assert.equal(V.suite, c.SUITE);
  assert.equal(Buffer.from(V.hpke_info_hex, "hex").toString(), "parley-e2ee-v1/key");
});

test("device keys: identity from the seed, HPKE public key, key signature byte for byte", () => {
  assert.ok(V.devices.length >= 2);
  for (const d of V.devices) {
    const id = c.identityFromSeed(c.unb64(d.identity_seed));
    assert.equal(c.b64(id.pub), d.identity_key, d.name);
    assert.equal(c.b64(c.hpkeKeyFromPrivate(c.unb64(d.hpke_private_key)).pub), d.public_key, d.name);
    const input = c.deviceKeyInput(d.user_id, d.device_id, d.key_id, V.suite, c.unb64(d.public_key));
    assert.equal(hx(input), d.key_signature_input_hex, d.name);
    assert.equal(c.b64(c.sign(id.priv, input)), d.key_signature, d.name);
    assert.ok(c.verify(c.unb64(d.listed.identity_key), c.deviceKeyInput(d.user_id, d.listed.device_id, d.listed.key_id, d.listed.suite, c.unb64(d.listed.public_key)), c.unb64(d.listed.key_signature)));
  }
});

test("the message: ad, signature input, ciphertext and signature reproduced; every recipient opens it", async () => {
  const m = V.message;
  const ids = { conversationId: m.conversation_id, senderUserId: m.sender_user_id, senderDeviceId: m.sender_device_id, clientMsgId: m.client_msg_id };
  const content = text(m.content);
  const ad = c.contentAd(ids);
  assert.equal(hx(ad), m.ad_hex);
  const k = c.unb64(m.content_key);
  const ct = c.sealContent(k, content, ad, c.unb64(m.nonce));
  assert.equal(c.b64(ct), m.envelope.ciphertext);
  const input = c.signatureInput(ids, V.suite, ct);
  assert.equal(hx(input), m.signature_input_hex);
  const sender = device(m.sender_device_id);
  assert.equal(c.b64(c.sign(c.identityFromSeed(c.unb64(sender.identity_seed)).priv, input)), m.envelope.signature);
  assert.deepEqual(m.envelope.keys.map((x) => x.device_id).sort(), m.recipients.map((r) => r.device_id).sort());
  for (const r of m.recipients) {
    assert.equal(hx(c.keyAad(ids.conversationId, ids.senderDeviceId, ids.clientMsgId, r.device_id, r.key_id)), r.aad_hex);
    const d = device(r.device_id);
    const got = await c.openEnvelope(ids, r.device_id, r.received_envelope, (id) => (id === d.key_id ? c.unb64(d.hpke_private_key) : undefined), c.unb64(sender.identity_key));
    assert.ok(!("reason" in got), `${r.device_id}: ${got.reason}`);
    assert.equal(new TextDecoder().decode(got.raw), m.content);
    assert.deepEqual(got.k, k);
  }
  // The sending device opens its own message with the K it kept.
  const own = await c.openEnvelope(ids, ids.senderDeviceId, { ...m.envelope, keys: undefined }, () => undefined, c.unb64(sender.identity_key), k);
  assert.equal(new TextDecoder().decode(own.raw), m.content);
});

test("open cases: the same content or the same reason as Go", async () => {
  assert.ok(V.open_cases.length >= 5);
  for (const oc of V.open_cases) {
    const ids = { conversationId: oc.conversation_id, senderUserId: oc.sender_user_id, senderDeviceId: oc.sender_device_id, clientMsgId: oc.client_msg_id };
    const d = device(oc.device_id);
    const got = await c.openEnvelope(ids, oc.device_id, oc.envelope, (id) => (d && id === d.key_id ? c.unb64(d.hpke_private_key) : undefined), oc.sender_identity_key ? c.unb64(oc.sender_identity_key) : undefined);
    if (oc.reason) assert.equal(got.reason, oc.reason, oc.name);
    else assert.equal(new TextDecoder().decode(got.raw), oc.content, oc.name);
  }
});

test("fingerprints and safety numbers", () => {
  const fps = new Map();
  for (const f of V.fingerprints) {
    const keys = f.identity_keys.map((k) => c.unb64(k));
    assert.equal(hx(c.fingerprintInput(f.user_id, keys)), f.input_hex);
    const fp = c.fingerprint(f.user_id, keys);
    assert.equal(hx(fp), f.fingerprint_hex);
    assert.equal(hx(c.fingerprint(f.user_id, [...keys].reverse())), f.fingerprint_hex, "the order of the keys does not matter");
    if (!fps.has(f.user_id)) fps.set(f.user_id, fp); // the first entry of a user lists all their devices
  }
  assert.ok(V.safety_numbers.length);
  for (const s of V.safety_numbers) {
    const a = { userId: s.user_a, fingerprint: fps.get(s.user_a) };
    const b = { userId: s.user_b, fingerprint: fps.get(s.user_b) };
    assert.equal(c.safetyNumber(a, b), s.safety_number);
    assert.equal(c.safetyNumber(b, a), s.safety_number);
  }
});

test("attachment files: the blob reproduced from the key, and decrypted back", () => {
  for (const f of V.files) {
    const plain = Uint8Array.from({ length: f.size }, (_, j) => j % 251);
    assert.equal(sha(plain), f.plaintext_sha256, f.name);
    const key = c.unb64(f.key);
    const blob = c.encryptFile(key, plain);
    assert.equal(blob.length, f.encrypted_size, f.name);
    assert.equal(c.encryptedFileSize(f.size), f.encrypted_size, f.name);
    assert.equal(sha(blob), f.encrypted_sha256, f.name);
    assert.equal(hx(blob.subarray(blob.length - f.encrypted_tail_hex.length / 2)), f.encrypted_tail_hex, f.name);
    assert.deepEqual(c.decryptFile(key, blob), plain, f.name);
    // Truncated by one byte, by a whole chunk, or extended: refused.
    assert.throws(() => c.decryptFile(key, blob.subarray(0, blob.length - 1)), f.name);
    if (blob.length > 65552) assert.throws(() => c.decryptFile(key, blob.subarray(0, 65552)), f.name + ": the first chunk alone is not a last chunk");
    const longer = new Uint8Array(blob.length + 16);
    longer.set(blob);
    assert.throws(() => c.decryptFile(key, longer), f.name);
  }
});

test("base64url: the same encodings accepted and refused", () => {
  for (const x of V.base64url) {
    if (x.refuse) assert.throws(() => c.unb64(x.base64url), JSON.stringify(x));
    else {
      assert.equal(hx(c.unb64(x.base64url)), x.hex);
      assert.equal(c.b64(Buffer.from(x.hex, "hex")), x.base64url);
    }
  }
});
