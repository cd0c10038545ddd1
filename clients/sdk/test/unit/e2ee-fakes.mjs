// Fakes for the e2ee unit tests: other devices ("peers") with real keys made
// by the e2ee module's crypto, and a FakeServer extended with the key
// directory of docs/design/e2ee.md (publish, per-user and per-conversation
// lists, key requests and re-sent keys). The server checks what the real
// one checks where a test depends on it (the key signature).
import assert from "node:assert/strict";
import * as c from "../../dist/esm/e2ee/index.js";
import { FakeServer, USER, DEVICE, CONV, BOB } from "./fakes.mjs";

export const B = (s) => c.b64(s);
const text = (s) => new TextEncoder().encode(s);

/** peer is another device with real keys. */
export async function peer(userId, deviceId) {
  const p = { userId, deviceId, id: c.newIdentity(), keyId: 1, hk: await c.newHpkeKey(), createdAt: "2026-01-01T00:00:00Z" };
  p.wire = () => ({
    device_id: p.deviceId,
    identity_key: B(p.id.pub),
    suite: c.SUITE,
    key_id: p.keyId,
    public_key: B(p.hk.pub),
    key_signature: B(c.sign(p.id.priv, c.deviceKeyInput(p.userId, p.deviceId, p.keyId, c.SUITE, p.hk.pub))),
    created_at: p.createdAt,
    keys_published_at: p.createdAt,
    updated_at: p.createdAt,
  });
  return p;
}

/**
 * e2eeServer adds the key directory to a FakeServer. members: conversation
 * id -> user ids; peers: the other devices (by user). The client's own
 * device appears once it publishes, with the times of ownTimes
 * (created_at: the device's creation; keys_published_at: its first
 * publish; a key set to undefined is left out, as an older server did).
 * holdPublish, a promise, holds every publish until it settles. dir.order
 * lists "publish" and "key_request" as the server took them.
 */
export function e2eeServer({ members = { [CONV]: [USER, BOB] }, peers = [], ownTimes = {}, holdPublish } = {}) {
  const server = new FakeServer();
  const dir = { published: [], own: undefined, versions: {}, keyRequests: [], keyPuts: [], peers, members, convGets: 0, order: [] };
  const bump = (u) => (dir.versions[u] = (dir.versions[u] || 0) + 1);
  for (const p of peers) bump(p.userId);
  const listOf = (u) => ({
    user_id: u,
    device_list_version: dir.versions[u] || 0,
    devices: [...(u === USER && dir.own ? [dir.own] : []), ...dir.peers.filter((p) => p.userId === u).map((p) => p.wire())],
  });
  dir.listOf = listOf;
  dir.bump = bump;
  const inner = server.fetch;
  const res = (status, body) => ({ status, headers: { get: () => null }, text: async () => (body === undefined ? "" : JSON.stringify(body)) });
  server.fetch = async (url, init) => {
    const u = new URL(url);
    const body = init.body ? JSON.parse(init.body) : undefined;
    let m;
    if (init.method === "PUT" && u.pathname === "/v1/devices/me/keys") {
      server.calls.push({ key: "PUT /v1/devices/me/keys", body });
      if (holdPublish) await holdPublish;
      const ok = c.verify(c.unb64(body.identity_key), c.deviceKeyInput(USER, DEVICE, body.key_id, body.suite, c.unb64(body.public_key)), c.unb64(body.key_signature));
      if (!ok) return res(400, { error: { code: "invalid_request", message: "key_signature does not verify" } });
      if (dir.own && dir.own.identity_key !== body.identity_key) return res(409, { error: { code: "conflict", message: "identity" } });
      dir.published.push(body);
      dir.order.push("publish");
      const t = "2026-01-01T00:00:00Z";
      dir.own = JSON.parse(JSON.stringify({ device_id: DEVICE, ...body, created_at: t, keys_published_at: t, updated_at: t, ...ownTimes }));
      return res(200, { device: dir.own, device_list_version: bump(USER) });
    }
    if (init.method === "GET" && (m = u.pathname.match(/^\/v1\/users\/([^/]+)\/devices$/))) {
      server.calls.push({ key: "GET user devices", user: m[1] });
      return res(200, listOf(decodeURIComponent(m[1])));
    }
    if (init.method === "GET" && (m = u.pathname.match(/^\/v1\/conversations\/([^/]+)\/devices$/))) {
      dir.convGets++;
      server.calls.push({ key: "GET conversation devices" });
      return res(200, { users: (dir.members[decodeURIComponent(m[1])] || []).map(listOf) });
    }
    if (init.method === "POST" && (m = u.pathname.match(/^\/v1\/conversations\/([^/]+)\/messages\/(\d+)\/key-requests$/))) {
      dir.keyRequests.push({ conversationId: decodeURIComponent(m[1]), seq: Number(m[2]) });
      dir.order.push("key_request");
      return res(202);
    }
    if (init.method === "PUT" && (m = u.pathname.match(/^\/v1\/conversations\/([^/]+)\/messages\/(\d+)\/keys$/))) {
      dir.keyPuts.push({ conversationId: decodeURIComponent(m[1]), seq: Number(m[2]), keys: body.keys });
      return res(204);
    }
    return inner(url, init);
  };
  return { server, dir };
}

/**
 * envelopeFrom builds, as peer `from`, the wire message a recipient device
 * receives: content sealed with a fresh K, signed, K sealed to `to` (a peer
 * or {deviceId, keyId, pub}).
 */
export async function envelopeFrom(from, { conversationId = CONV, seq, cmid = "m-" + seq, content, to, k = crypto.getRandomValues(new Uint8Array(32)), attachments, createdAt = "2026-11-27T09:30:00Z" }) {
  const ids = { conversationId, senderUserId: from.userId, senderDeviceId: from.deviceId, clientMsgId: cmid };
  const ct = c.sealContent(k, text(JSON.stringify(content)), c.contentAd(ids));
  const sig = c.sign(from.id.priv, c.signatureInput(ids, c.SUITE, ct));
  const envelope = { v: 1, suite: c.SUITE, ciphertext: B(ct), signature: B(sig) };
  if (to) {
    const r = await c.sealKey(k, to.pub, c.keyAad(conversationId, from.deviceId, cmid, to.deviceId, to.keyId));
    envelope.key = { device_id: to.deviceId, key_id: to.keyId, enc: B(r.enc), sealed: B(r.sealed) };
  }
  const m = {
    id: "m-" + seq,
    conversation_id: conversationId,
    seq,
    sender_id: from.userId,
    sender_device_id: from.deviceId,
    client_msg_id: cmid,
    type: "encrypted",
    body: "",
    created_at: createdAt,
    envelope,
  };
  if (attachments) m.attachments = attachments;
  return { message: m, k };
}

/** openAs opens, as peer p, an envelope the client sent (a send frame's), returning the content. */
export async function openAs(p, frame, sender) {
  const env = frame.envelope;
  const key = env.keys.find((x) => x.device_id === p.deviceId);
  assert.ok(key, "no key for " + p.deviceId);
  assert.equal(key.key_id, p.keyId);
  const k = await c.openKey(p.hk.priv, c.unb64(key.enc), c.unb64(key.sealed), c.keyAad(frame.conversation_id, DEVICE, frame.client_msg_id, p.deviceId, p.keyId));
  const ids = { conversationId: frame.conversation_id, senderUserId: USER, senderDeviceId: DEVICE, clientMsgId: frame.client_msg_id };
  const ct = c.unb64(env.ciphertext);
  assert.ok(c.verify(c.unb64(sender.identity_key), c.signatureInput(ids, env.suite, ct), c.unb64(env.signature)), "the signature verifies");
  return JSON.parse(new TextDecoder().decode(c.openContent(k, ct, c.contentAd(ids))));
}
