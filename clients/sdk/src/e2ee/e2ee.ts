// E2EE is the end-to-end encryption of docs/design/e2ee.md, plugged into a
// ParleyClient (`new ParleyClient({ e2ee: new E2EE() })`): device keys in
// the client's storage, their publication and rotation, the verified device
// lists of the people one talks to, the envelope of every send to an e2ee
// conversation, the decryption of every message received (live, sync,
// history), key requests both ways, safety numbers, and encrypted files.
import { ParleyError } from "../errors.js";
import type { Attachment, E2EEHost, E2EEPlugin, E2EEState, SealedContent } from "../types.js";
import type { UploadOptions } from "../media.js";
import { b64, hex, random, unb64n, utf8 } from "./bytes.js";
import {
  SUITE,
  openEnvelope,
  parallel,
  deviceKeyInput,
  fingerprint,
  hpkeKeyFromPrivate,
  identityFromSeed,
  keyAad,
  newHpkeKey,
  newIdentity,
  safetyNumber,
  sealContent,
  sealKey,
  contentAd,
  sign,
  signatureInput,
  verify,
  type KeyPair,
  type MessageIds,
  type WireKey,
} from "./crypto.js";
import { decryptFile, encryptFile } from "./file.js";
import { sha256 } from "@noble/hashes/sha2.js";

const DAY = 86400000;

export interface E2EEOptions {
  /** A new HPKE key this often. Default 7 days. */
  rotateMs?: number;
  /** An old HPKE private key (and the content keys of own sent messages) is kept this long after its successor, then erased. Default 7 days. */
  graceMs?: number;
  /** How often rotation and erasure are checked while the client runs. Default 1 hour. */
  checkEveryMs?: number;
  /** Ask the sender's devices again for a message this device cannot decrypt. Default true. */
  keyRequests?: boolean;
}

/** One device of a user, as listed by the server and checked here. */
export interface DeviceInfo {
  deviceId: string;
  identityKey: Uint8Array;
  keyId: number;
  publicKey: Uint8Array;
  /** when the device was created (its login), as the server compares it with a message's time before it forwards a key request */
  createdAt?: string;
  /** when the device first published keys (from then on messages are sealed to it); absent from servers before this field */
  keysPublishedAt?: string;
  /** key_signature verifies and the identity key is the one first seen for this device id */
  trusted: boolean;
  /** why not trusted: bad_key_signature, identity_changed, unknown_suite */
  problem?: string;
}

interface UserDevices {
  version: number;
  devices: DeviceInfo[];
  /** refetch before the next use (reconnect, device_list frame, device_mismatch) */
  stale: boolean;
}

/** What the keystore holds (storage key e2ee/DEVICE/keys, base64url). */
interface StoredKeys {
  identity: { priv: string; pub: string };
  hpke: { keyId: number; priv: string; pub: string; createdAt: number; retiredAt?: number }[];
  /** the highest key_id the server accepted */
  published: number;
}

interface HpkeKey {
  keyId: number;
  pair: KeyPair;
  createdAt: number;
  retiredAt?: number;
}

/** A content key of an own sent message, kept for display and key requests (storage e2ee/DEVICE/sent/CONV/SEQ). */
interface SentKey {
  k: string;
  cmid: string;
  at: number;
}

/** The plaintext attachment of the content (snake_case, docs/design/e2ee.md). */
interface WireAttachment {
  media_id: string;
  key: string;
  sha256: string;
  content_type: string;
  size: number;
  filename?: string;
  width?: number;
  height?: number;
  duration_ms?: number;
  blurhash?: string;
  thumbnail?: { media_id: string; key: string; sha256: string; content_type: string; width?: number; height?: number };
}


/**
 * E2EE holds one device's keys and does the module's work for the client
 * it is passed to (one client per E2EE). Its methods for the app:
 * safetyNumber, verify, unverify, verification, devices, download.
 */
export class E2EE implements E2EEPlugin {
  private h?: E2EEHost;
  private o: Required<E2EEOptions>;
  private identity?: KeyPair;
  private hpke: HpkeKey[] = [];
  private published = 0;
  private publishing?: Promise<void>;
  private lists = new Map<string, UserDevices>();
  private fetching = new Map<string, Promise<UserDevices>>();
  /** conversations whose member lists were fetched since the last connect */
  private convFresh = new Set<string>();
  /** keys sealed for a pending send, reused after a device_mismatch: cmid -> deviceId:keyId -> entry */
  private sealed = new Map<string, Map<string, WireKey>>();
  private uploads = new Map<string, WireAttachment>();
  private asked = new Set<string>();
  private askQ: Promise<unknown> = Promise.resolve();
  private timer?: ReturnType<typeof setTimeout>;
  private checking?: Promise<void>;
  /** connected and not stopped: the rotation check is armed */
  private running = false;
  /** the device's own created_at as the server lists it: when it was created (messages before it were never sealed to it, and the server refuses key requests for them) */
  private myCreated = "";

  constructor(opts: E2EEOptions = {}) {
    this.o = { rotateMs: 7 * DAY, graceMs: 7 * DAY, checkEveryMs: 3600000, keyRequests: true, ...opts };
  }

  // ---- plumbing

  /** @internal */
  attach(host: E2EEHost): void {
    if (this.h && this.h !== host) throw new ParleyError("invalid_request", "an E2EE belongs to one client");
    this.h = host;
  }

  private get host(): E2EEHost {
    if (!this.h) throw new ParleyError("invalid_request", "E2EE is not attached to a client");
    return this.h;
  }

  private me(): { userId: string; deviceId: string } {
    const s = this.host.session;
    if (!s) throw new ParleyError("unauthorized", "not logged in");
    return s;
  }

  private k(name: string): string {
    const s = this.me();
    return `${s.userId}/e2ee/${s.deviceId}/${name}`;
  }

  private log(level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) {
    this.host.log(level, "e2ee: " + msg, fields);
  }

  // ---- the keystore

  /**
   * @internal load reads this device's keys from storage, making them
   * (and storing them) the first time. Called at login and restore.
   */
  async load(): Promise<void> {
    this.lists.clear();
    this.convFresh.clear();
    this.published = 0;
    this.identity = undefined;
    this.hpke = [];
    const st = await this.host.storage.get<StoredKeys>(this.k("keys"));
    if (st) {
      this.identity = identityFromSeed(unb64n(st.identity.priv, 32));
      this.hpke = st.hpke.map((x) => ({ keyId: x.keyId, pair: hpkeKeyFromPrivate(unb64n(x.priv, 32)), createdAt: x.createdAt, retiredAt: x.retiredAt }));
      this.published = st.published;
    } else {
      this.identity = newIdentity();
      this.hpke = [{ keyId: 1, pair: await newHpkeKey(), createdAt: this.host.now() }];
      await this.saveKeys();
    }
  }

  private async saveKeys(): Promise<void> {
    const id = this.identity!;
    const v: StoredKeys = {
      identity: { priv: b64(id.priv), pub: b64(id.pub) },
      hpke: this.hpke.map((x) => ({ keyId: x.keyId, priv: b64(x.pair.priv), pub: b64(x.pair.pub), createdAt: x.createdAt, ...(x.retiredAt ? { retiredAt: x.retiredAt } : {}) })),
      published: this.published,
    };
    await this.host.storage.set(this.k("keys"), v);
  }

  private current(): HpkeKey {
    return this.hpke.reduce((a, b) => (b.keyId > a.keyId ? b : a));
  }

  /** identityKey is this device's public identity key (base64url). */
  identityKey(): string {
    if (!this.identity) throw new ParleyError("unauthorized", "not logged in");
    return b64(this.identity.pub);
  }

  /**
   * @internal connected runs at every ready: the lists are refetched
   * before the next send, keys are published when due, and the rotation
   * check is (re)armed.
   */
  connected(): void {
    for (const l of this.lists.values()) l.stale = true;
    this.convFresh.clear();
    this.running = true;
    this.check().finally(() => this.schedule(this.o.checkEveryMs));
  }

  /** @internal stop ends the timers (close, logout). */
  stop(): void {
    this.running = false;
    this.unschedule();
  }

  private unschedule() {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number) {
    if (!this.running) return;
    this.unschedule();
    // Steps under 50 s: React Native warns about longer timers.
    const at = this.host.now() + ms;
    const step = () => {
      const left = at - this.host.now();
      if (left > 0) this.timer = setTimeout(step, Math.min(left, 50000));
      else {
        this.timer = undefined;
        this.check().finally(() => this.timer === undefined && this.schedule(this.o.checkEveryMs));
      }
    };
    this.timer = setTimeout(step, Math.min(ms, 50000));
  }

  /**
   * check rotates the HPKE key when it is older than rotateMs, erases the
   * keys retired more than graceMs ago and the old content keys, and
   * publishes what the server lacks. Safe to call any time.
   */
  check(): Promise<void> {
    return (this.checking ??= this.checkNow().finally(() => (this.checking = undefined)));
  }

  private async checkNow(): Promise<void> {
    if (!this.identity || !this.host.session) return;
    const now = this.host.now();
    let changed = false;
    const cur = this.current();
    if (now - cur.createdAt >= this.o.rotateMs && this.published >= cur.keyId) {
      cur.retiredAt = now;
      this.hpke.push({ keyId: cur.keyId + 1, pair: await newHpkeKey(), createdAt: now });
      changed = true;
    }
    const keep = this.hpke.filter((x) => !x.retiredAt || now - x.retiredAt < this.o.graceMs);
    if (keep.length !== this.hpke.length) {
      this.hpke = keep;
      changed = true;
    }
    if (changed) await this.saveKeys(); // stored before it is published: a crash never loses a published key
    try {
      await this.publish();
    } catch (e) {
      this.log("warn", "publishing keys", { code: (e as ParleyError).code, error: String(e) });
    }
    await this.eraseSent(now);
  }

  /** publish puts the current HPKE key (signed) on the server, once per key_id. */
  publish(): Promise<void> {
    return (this.publishing ??= (async () => {
      const me = this.me();
      const cur = this.current();
      if (this.published >= cur.keyId) return;
      const sig = sign(this.identity!.priv, deviceKeyInput(me.userId, me.deviceId, cur.keyId, SUITE, cur.pair.pub));
      await this.host.request("PUT", "/v1/devices/me/keys", {
        identity_key: b64(this.identity!.pub),
        suite: SUITE,
        key_id: cur.keyId,
        public_key: b64(cur.pair.pub),
        key_signature: b64(sig),
      });
      this.published = Math.max(this.published, cur.keyId);
      // The retired key's grace runs from the publication of its successor.
      const now = this.host.now();
      for (const x of this.hpke) if (x.keyId < cur.keyId && (!x.retiredAt || x.retiredAt > now)) x.retiredAt = now;
      await this.saveKeys();
      const own = this.lists.get(me.userId);
      if (own) own.stale = true;
    })().finally(() => (this.publishing = undefined)));
  }

  private async eraseSent(now: number) {
    const st = this.host.storage;
    for (const key of await st.keys(this.k("sent/"))) {
      const v = await st.get<SentKey>(key);
      if (!v || now - v.at >= this.o.graceMs) await st.delete(key);
    }
  }

  // ---- device lists

  /**
   * checkList verifies a user's list from the server: each key_signature
   * under its identity key, and each known device's identity unchanged
   * (trust on first use, kept in storage). It emits e2ee_device_added for a
   * device not seen before (when the user's list was known), and
   * e2ee_device_untrusted and e2ee_verification_changed as they apply.
   */
  private async checkList(userId: string, w: any): Promise<UserDevices> {
    const st = this.host.storage;
    const knownKey = this.k("known/" + userId);
    const known = (await st.get<{ devices: Record<string, string> }>(knownKey)) || { devices: {} };
    const hadList = Object.keys(known.devices).length > 0;
    let learnt = false;
    const devices: DeviceInfo[] = [];
    const me = this.me();
    for (const d of (w && w.devices) || []) {
      let info: DeviceInfo;
      try {
        info = {
          deviceId: String(d.device_id),
          identityKey: unb64n(d.identity_key, 32),
          keyId: Number(d.key_id),
          publicKey: unb64n(d.public_key, 32),
          createdAt: d.created_at,
          keysPublishedAt: d.keys_published_at,
          trusted: true,
        };
        const sig = unb64n(d.key_signature, 64);
        if (d.suite !== SUITE) Object.assign(info, { trusted: false, problem: "unknown_suite" });
        else if (!Number.isSafeInteger(info.keyId) || info.keyId < 1 || !verify(info.identityKey, deviceKeyInput(userId, info.deviceId, info.keyId, SUITE, info.publicKey), sig))
          Object.assign(info, { trusted: false, problem: "bad_key_signature" });
      } catch {
        this.log("warn", "a device entry does not decode", { userId });
        continue;
      }
      const seen = known.devices[info.deviceId];
      if (seen === undefined && info.trusted) {
        known.devices[info.deviceId] = b64(info.identityKey);
        learnt = true;
        if (hadList && info.deviceId !== me.deviceId) this.host.emit("e2ee_device_added", { userId, deviceId: info.deviceId, conversationIds: this.shared(userId) });
      } else if (seen !== undefined && seen !== b64(info.identityKey)) {
        Object.assign(info, { trusted: false, problem: "identity_changed" });
      }
      if (!info.trusted) this.host.emit("e2ee_device_untrusted", { userId, deviceId: info.deviceId, reason: info.problem! });
      // A server that does not send keys_published_at put the publish time in created_at: no ground for before().
      if (userId === me.userId && info.deviceId === me.deviceId) this.myCreated = (info.keysPublishedAt && info.createdAt) || "";
      devices.push(info);
    }
    if (learnt) await st.set(knownKey, known);
    const list: UserDevices = { version: Number(w && w.device_list_version) || 0, devices, stale: false };
    const prev = this.lists.get(userId);
    if (!prev || list.version >= prev.version) this.lists.set(userId, list);
    await this.checkVerified(userId, list);
    return this.lists.get(userId)!;
  }

  /** shared lists the e2ee conversations userId is a member of. */
  private shared(userId: string): string[] {
    return this.host.conversations().filter((c) => c.e2ee && c.members.some((m) => m.userId === userId)).map((c) => c.id);
  }

  private async checkVerified(userId: string, list: UserDevices) {
    const st = this.host.storage;
    const v = await st.get<{ fingerprint: string; warned?: string }>(this.k("verified/" + userId));
    if (!v) return;
    const fp = hex(this.fingerprintOf(userId, list));
    if (fp !== v.fingerprint && v.warned !== fp) {
      await st.set(this.k("verified/" + userId), { ...v, warned: fp });
      this.host.emit("e2ee_verification_changed", { userId });
    }
  }

  /** user returns userId's checked device list, fetching it when unknown or stale (or force). */
  private user(userId: string, force = false): Promise<UserDevices> {
    const l = this.lists.get(userId);
    if (l && !l.stale && !force) return Promise.resolve(l);
    let f = this.fetching.get(userId);
    if (!f) {
      f = this.host
        .request<any>("GET", `/v1/users/${encodeURIComponent(userId)}/devices`)
        .then((w) => this.checkList(userId, w))
        .finally(() => this.fetching.delete(userId));
      this.fetching.set(userId, f);
    }
    return f;
  }

  /** members fetches the lists of every member of a conversation (one call) when any is stale. */
  private async members(conversationId: string, force: boolean): Promise<UserDevices[]> {
    const conv = this.host.conversation(conversationId);
    const ids = conv ? conv.members.map((m) => m.userId) : [];
    if (!force && this.convFresh.has(conversationId) && ids.length && ids.every((u) => this.lists.get(u) && !this.lists.get(u)!.stale))
      return ids.map((u) => this.lists.get(u)!);
    const w = await this.host.request<any>("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/devices`);
    const out: UserDevices[] = [];
    for (const u of (w && w.users) || []) out.push(await this.checkList(String(u.user_id), u));
    this.convFresh.add(conversationId);
    return out;
  }

  /** devices lists a user's devices as last checked (fetched now if unknown). */
  async devices(userId: string): Promise<DeviceInfo[]> {
    return (await this.user(userId)).devices;
  }

  // ---- sending

  /**
   * @internal seal encrypts a send's content at send() time: K, the
   * ciphertext and the signature are written to the outbox with it, so a
   * resend after a restart carries the same bytes the server may have.
   */
  seal(conversationId: string, clientMsgId: string, type: string, body: string, attachments?: (string | Attachment)[]): SealedContent {
    if (!this.identity) throw new ParleyError("unauthorized", "not logged in");
    const me = this.me();
    const content: Record<string, unknown> = { v: 1, type, body };
    if (attachments && attachments.length) {
      content.attachments = attachments.map((a) => {
        const id = typeof a === "string" ? a : a.mediaId;
        const w = this.uploads.get(id) || (typeof a === "string" ? undefined : toWire(a));
        if (!w) throw new ParleyError("invalid_request", `attachment ${id} was not uploaded encrypted by this client: use upload() on the e2ee conversation`);
        return w;
      });
    }
    const k = random(32);
    const ids: MessageIds = { conversationId, senderUserId: me.userId, senderDeviceId: me.deviceId, clientMsgId };
    const ct = sealContent(k, utf8(JSON.stringify(content)), contentAd(ids));
    const sig = sign(this.identity.priv, signatureInput(ids, SUITE, ct));
    const out: SealedContent = { k: b64(k), ciphertext: b64(ct), signature: b64(sig), suite: SUITE };
    // The server attaches each media, then its thumbnail (a media of its own), in the content's order.
    if (content.attachments) out.media = (content.attachments as WireAttachment[]).flatMap((w) => (w.thumbnail ? [w.media_id, w.thumbnail.media_id] : [w.media_id]));
    return out;
  }

  /**
   * @internal keys seals K to every current device of every member (the
   * sending device excluded). After a device_mismatch (its error object in
   * mismatch) the lists are refetched first; keys already sealed to an
   * unchanged device are reused.
   */
  async keys(conversationId: string, clientMsgId: string, sealed: SealedContent, mismatch?: unknown): Promise<WireKey[]> {
    await this.publish(); // the server refuses sends from a device without keys
    const me = this.me();
    const lists = await this.members(conversationId, !!mismatch);
    const k = unb64n(sealed.k, 32);
    let cache = this.sealed.get(clientMsgId);
    if (!cache) this.sealed.set(clientMsgId, (cache = new Map()));
    const to: DeviceInfo[] = [];
    for (const l of lists)
      for (const d of l.devices) {
        if (d.deviceId === me.deviceId) continue;
        if (!d.trusted) throw new ParleyError("device_untrusted", `a device of a member (${d.deviceId}) failed its key check (${d.problem}): not sending to it`);
        to.push(d);
      }
    return parallel(to, 16, async (d) => {
      const ck = d.deviceId + ":" + d.keyId;
      let e = cache!.get(ck);
      if (!e) {
        const r = await sealKey(k, d.publicKey, keyAad(conversationId, me.deviceId, clientMsgId, d.deviceId, d.keyId));
        e = { device_id: d.deviceId, key_id: d.keyId, enc: b64(r.enc), sealed: b64(r.sealed) };
        cache!.set(ck, e);
      }
      return e;
    });
  }

  /** @internal sent forgets the per-device keys of a send that is done (acked or failed). */
  done(clientMsgId: string): void {
    this.sealed.delete(clientMsgId);
  }

  // ---- receiving

  /**
   * @internal open decrypts, in place, every encrypted message object in a
   * frame or REST answer (wire form): message, messages, sync_result's
   * conversations[].messages, a conversation view's last_message.
   */
  async open(f: any): Promise<void> {
    if (!f || typeof f !== "object" || !this.identity || !this.host.session) return;
    const msgs: any[] = [];
    if (f.message) msgs.push(f.message);
    if (Array.isArray(f.messages)) msgs.push(...f.messages);
    if (f.last_message) msgs.push(f.last_message);
    if (f.conversation && f.conversation.last_message) msgs.push(f.conversation.last_message);
    for (const e of Array.isArray(f.conversations) ? f.conversations : []) {
      if (e && Array.isArray(e.messages)) msgs.push(...e.messages);
      if (e && e.last_message) msgs.push(e.last_message);
    }
    let n = 0;
    for (const m of msgs) {
      if (!m || m.type !== "encrypted" || m.e2ee) continue;
      // A big sync page in pure JavaScript is all microtasks: let timers and socket events run now and then.
      if (++n % 16 === 0) await new Promise<void>((r) => setTimeout(r, 0));
      await this.openOne(m);
    }
  }

  private async openOne(m: any): Promise<void> {
    if (m.deleted || m.withheld) return;
    let reason: string;
    try {
      reason = await this.decrypt(m);
    } catch (e) {
      this.log("warn", "decrypting", { conversationId: m.conversation_id, seq: m.seq, error: String(e) });
      reason = "bad_content";
    }
    if (reason) {
      this.mark(m, reason);
      // no_key: ask the sender's devices, unless this device or its user came after the message.
      if (reason === "no_key" && m.envelope && this.o.keyRequests && m.sender_device_id !== this.me().deviceId && !(await this.before(m))) this.ask(m.conversation_id, m.seq);
    }
    delete m.envelope;
  }

  private mark(m: any, reason: string) {
    const st: E2EEState = { state: "undecryptable", reason };
    m.e2ee = st;
    m.body = "";
  }

  /** decrypt fills in m's content; it returns "" or the reason it cannot. */
  private async decrypt(m: any): Promise<string> {
    const me = this.me();
    const env = m.envelope;
    const ids: MessageIds = { conversationId: m.conversation_id, senderUserId: m.sender_id, senderDeviceId: m.sender_device_id, clientMsgId: m.client_msg_id };
    const own = m.sender_device_id === me.deviceId && m.sender_id === me.userId;
    let ownK: Uint8Array | undefined;
    let pending: string | undefined;
    if (own) {
      // Our own message: the content key is in the outbox or the sent keys.
      pending = this.host.pendingKey(m.client_msg_id);
      const sent = pending ? undefined : await this.host.storage.get<SentKey>(this.k(`sent/${m.conversation_id}/${m.seq}`));
      const kb = pending || (sent && sent.cmid === m.client_msg_id ? sent.k : undefined);
      if (!kb) return "no_key";
      ownK = unb64n(kb, 32);
    }
    const needsSender = own || (env && env.key && env.key.device_id === me.deviceId && this.hpke.some((x) => x.keyId === env.key.key_id));
    const sender = !needsSender ? undefined : own ? this.identity!.pub : await this.senderDevice(m.sender_id, m.sender_device_id);
    const r = await openEnvelope(ids, me.deviceId, env, (id) => this.hpke.find((x) => x.keyId === id)?.pair.priv, sender, ownK);
    if ("reason" in r) return r.reason;
    if (pending && m.seq > 0) await this.remember(m.conversation_id, m.seq, m.client_msg_id, pending);
    const c = r.content;
    // Each media the content names (thumbnails too) must be one the server attached to this message.
    const server = new Set(((m.attachments as any[]) || []).map((a) => a && a.media_id));
    const atts: any[] = c.attachments || [];
    for (const a of atts) if (!server.has(a.media_id) || (a.thumbnail && !server.has(a.thumbnail.media_id))) return "bad_content";
    m.type = c.type;
    m.body = c.body || "";
    if (atts.length || m.attachments) m.attachments = atts.map((a) => ({ ...a, encrypted: true }));
    const ok: E2EEState = { state: "decrypted" };
    m.e2ee = ok;
    return "";
  }

  /** before tells a message this device was never meant to have (sent before it was created, or before its user joined): not asked for. The server's rule, by the same times: the device's created_at, not when it published keys. */
  private async before(m: any): Promise<boolean> {
    const at = Date.parse(m.created_at);
    if (!this.myCreated) await this.user(this.me().userId).catch(() => undefined);
    if (this.myCreated && at < Date.parse(this.myCreated)) return true;
    const conv = this.host.conversation(m.conversation_id);
    const mine = conv && conv.members.find((x) => x.userId === this.me().userId);
    return !!(mine && mine.joinedAt && at < Date.parse(mine.joinedAt));
  }

  /** senderDevice is the identity key to check a sender device's signature with (the list refetched once if the device is unknown); undefined when unknown or untrusted. */
  private async senderDevice(userId: string, deviceId: string): Promise<Uint8Array | undefined> {
    const find = (l: UserDevices) => l.devices.find((d) => d.deviceId === deviceId);
    let l = await this.user(userId);
    if (!find(l)) l = await this.user(userId, true);
    const d = find(l);
    return d && d.trusted ? d.identityKey : undefined;
  }

  private async remember(conversationId: string, seq: number, cmid: string, k: string) {
    const v: SentKey = { k, cmid, at: this.host.now() };
    await this.host.storage.set(this.k(`sent/${conversationId}/${seq}`), v);
  }

  /** ask sends one key request for a message (once per message and session), one at a time. */
  private ask(conversationId: string, seq: number) {
    const id = conversationId + "/" + seq;
    if (this.asked.has(id)) return;
    this.asked.add(id);
    this.askQ = this.askQ.then(() => this.requestKey(conversationId, seq).catch(() => {}));
  }

  /**
   * requestKey asks the sender's devices to seal message seq's key to this
   * device again (POST .../key-requests). The answer comes as a repeat of
   * the message; rate_limited is waited out and retried (three times).
   * This device's keys are published first: a sender's device seals only
   * to a device it finds in the key directory, and the first sync after a
   * login can open a message before the publish is done.
   */
  async requestKey(conversationId: string, seq: number): Promise<void> {
    await this.publish();
    for (let i = 0; ; i++) {
      try {
        await this.host.request("POST", `/v1/conversations/${encodeURIComponent(conversationId)}/messages/${seq}/key-requests`);
        return;
      } catch (e) {
        const err = e as ParleyError;
        if (err.code !== "rate_limited" || i >= 3) {
          this.log("info", "key request refused", { conversationId, seq, code: err.code });
          throw err;
        }
        await new Promise<void>((r) => setTimeout(r, Math.min(50, err.retryAfter || 1) * 1000));
      }
    }
  }

  /** @internal frame handles key_request and device_list frames. */
  frame(f: any): void {
    if (!this.identity || !this.host.session) return;
    if (f.type === "device_list") {
      const l = this.lists.get(f.user_id);
      if (!l || f.device_list_version > l.version) {
        if (l) l.stale = true;
        // Known people are refetched at once (new devices announced now); others when next needed.
        if (l) this.user(f.user_id).catch((e) => this.log("warn", "device list", { error: String(e) }));
      }
    } else if (f.type === "key_request") {
      this.answer(f).catch((e) => this.log("info", "key request not answered", { conversationId: f.conversation_id, seq: f.seq, code: (e as ParleyError).code }));
    }
  }

  /** answer seals a kept content key to the requesting device (PUT .../keys). */
  private async answer(f: any): Promise<void> {
    const sent = await this.host.storage.get<SentKey>(this.k(`sent/${f.conversation_id}/${f.seq}`));
    if (!sent) return; // not ours, or past the grace: nothing to give
    const me = this.me();
    const l = await this.user(f.user_id, true);
    const d = l.devices.find((x) => x.deviceId === f.device_id);
    if (!d || !d.trusted) return;
    const r = await sealKey(unb64n(sent.k, 32), d.publicKey, keyAad(f.conversation_id, me.deviceId, sent.cmid, d.deviceId, d.keyId));
    await this.host.request("PUT", `/v1/conversations/${encodeURIComponent(f.conversation_id)}/messages/${f.seq}/keys`, {
      keys: [{ device_id: d.deviceId, key_id: d.keyId, enc: b64(r.enc), sealed: b64(r.sealed) }],
    });
  }

  // ---- verification

  private fingerprintOf(userId: string, l: UserDevices): Uint8Array {
    return fingerprint(userId, l.devices.map((d) => d.identityKey));
  }

  /** fingerprint is a user's fingerprint (hex) over their devices' identity keys as listed now. */
  async fingerprint(userId: string): Promise<string> {
    return hex(this.fingerprintOf(userId, await this.user(userId)));
  }

  /**
   * safetyNumber is the 60-digit code the user and userId compare (in
   * person or on a call); it changes when either adds, removes or resets
   * a device.
   */
  async safetyNumber(userId: string): Promise<string> {
    const me = this.me().userId;
    const [a, b] = await Promise.all([this.user(me), this.user(userId)]);
    return safetyNumber({ userId: me, fingerprint: this.fingerprintOf(me, a) }, { userId, fingerprint: this.fingerprintOf(userId, b) });
  }

  /** verify marks userId verified at their current fingerprint (after comparing safety numbers). */
  async verify(userId: string): Promise<void> {
    const fp = hex(this.fingerprintOf(userId, await this.user(userId, true)));
    await this.host.storage.set(this.k("verified/" + userId), { fingerprint: fp });
  }

  async unverify(userId: string): Promise<void> {
    await this.host.storage.delete(this.k("verified/" + userId));
  }

  /** verification: "verified", "changed" (their code changed since: warn before sending), or "unverified". */
  async verification(userId: string): Promise<"verified" | "changed" | "unverified"> {
    const v = await this.host.storage.get<{ fingerprint: string }>(this.k("verified/" + userId));
    if (!v) return "unverified";
    return hex(this.fingerprintOf(userId, await this.user(userId))) === v.fingerprint ? "verified" : "changed";
  }

  // ---- files

  /**
   * @internal upload encrypts a file (and its thumbnail) with fresh keys and
   * uploads the blobs with encrypted=true; the attachment returned carries
   * the keys and metadata that go inside the message content.
   */
  async upload(conversationId: string, data: Uint8Array, opts: UploadOptions = {}): Promise<Attachment> {
    const put = async (plain: Uint8Array): Promise<{ id: string; key: string; sha: string }> => {
      const key = random(32);
      const blob = encryptFile(key, plain);
      const a = await this.host.upload(conversationId, blob, { ...opts, filename: "encrypted", contentType: "application/octet-stream", encrypted: true });
      return { id: a.mediaId, key: b64(key), sha: hex(sha256(blob)) };
    };
    const main = await put(data);
    const w: WireAttachment = { media_id: main.id, key: main.key, sha256: main.sha, content_type: opts.contentType || "application/octet-stream", size: data.length };
    if (opts.filename) w.filename = opts.filename;
    if (opts.width) w.width = opts.width;
    if (opts.height) w.height = opts.height;
    if (opts.durationMs) w.duration_ms = opts.durationMs;
    if (opts.blurhash) w.blurhash = opts.blurhash;
    if (opts.thumbnail) {
      const t = await put(opts.thumbnail.data);
      w.thumbnail = { media_id: t.id, key: t.key, sha256: t.sha, content_type: opts.thumbnail.contentType };
      if (opts.thumbnail.width) w.thumbnail.width = opts.thumbnail.width;
      if (opts.thumbnail.height) w.thumbnail.height = opts.thumbnail.height;
    }
    this.uploads.set(w.media_id, w);
    return fromWire(w);
  }

  /**
   * download fetches an encrypted attachment (or its thumbnail) of a
   * decrypted message, checks the blob's SHA-256 against the content's and
   * decrypts it. Throws ParleyError invalid_request when the digest or a
   * chunk does not match.
   */
  async download(a: Attachment, variant: "original" | "thumbnail" = "original"): Promise<Uint8Array> {
    const t = variant === "thumbnail" ? a.thumbnail : a;
    if (!t || !t.mediaId || !t.key || !t.sha256) throw new ParleyError("invalid_request", "not an encrypted attachment with a key" + (variant === "thumbnail" ? " (no thumbnail)" : ""));
    const url = await this.host.mediaUrl(t.mediaId, "original");
    const res = await this.host.fetchBytes(url);
    if (hex(sha256(res)) !== t.sha256) throw new ParleyError("invalid_request", "the downloaded file does not match its digest");
    try {
      return decryptFile(unb64n(t.key, 32), res);
    } catch {
      throw new ParleyError("invalid_request", "the downloaded file does not decrypt");
    }
  }
}

function toWire(a: Attachment): WireAttachment | undefined {
  if (!a.key || !a.sha256) return undefined;
  const w: any = { media_id: a.mediaId, key: a.key, sha256: a.sha256, content_type: a.contentType || "application/octet-stream", size: a.size || 0 };
  if (a.filename) w.filename = a.filename;
  if (a.width) w.width = a.width;
  if (a.height) w.height = a.height;
  if (a.durationMs) w.duration_ms = a.durationMs;
  if (a.blurhash) w.blurhash = a.blurhash;
  const t = a.thumbnail;
  if (t && t.mediaId && t.key && t.sha256) w.thumbnail = { media_id: t.mediaId, key: t.key, sha256: t.sha256, content_type: t.contentType || "", width: t.width, height: t.height };
  return w;
}

function fromWire(w: WireAttachment): Attachment {
  const a: Attachment = { mediaId: w.media_id, key: w.key, sha256: w.sha256, contentType: w.content_type, size: w.size, encrypted: true };
  if (w.filename) a.filename = w.filename;
  if (w.width) a.width = w.width;
  if (w.height) a.height = w.height;
  if (w.duration_ms) a.durationMs = w.duration_ms;
  if (w.blurhash) a.blurhash = w.blurhash;
  const t = w.thumbnail;
  if (t) a.thumbnail = { mediaId: t.media_id, key: t.key, sha256: t.sha256, contentType: t.content_type, width: t.width || 0, height: t.height || 0 };
  return a;
}

