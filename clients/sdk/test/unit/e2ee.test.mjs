// The e2ee module plugged into the client, against a fake server and fake
// peers with real keys: keys published at login (private keys never sent),
// sends sealed to every device, device_mismatch refetched and resent with
// the same client_msg_id, live/sync/history decrypted, undecryptable
// messages kept with a reason and asked for again, key requests answered,
// device_list frames followed, safety numbers, verification warnings, and
// key rotation with its grace period.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../dist/esm/index.js";
import * as c from "../../dist/esm/e2ee/index.js";
import { E2EE, useEngine } from "../../dist/esm/e2ee/index.js";
import { FakeWebSocket, makeClient, online, ready, syncReply, useClock, flush, CONV, USER, DEVICE, BOB, CAROL, convObj, member, entry } from "./fakes.mjs";
import { e2eeServer, peer, envelopeFrom, openAs, B } from "./e2ee-fakes.mjs";

useEngine("js"); // every step is a microtask: flush() is enough to wait for one

const E2EE_CONV = { ...convObj(CONV, 0), e2ee: true };

async function waitFor(cond, what = "condition") {
  for (let i = 0; i < 2000; i++) {
    const v = await cond();
    if (v) return v;
    await flush(1);
  }
  throw new Error("timed out waiting for " + what);
}

async function setup({ storage = new MemoryStorage(), peers, members, ownTimes, conversations = [entry(E2EE_CONV)], options = {}, e2eeOptions } = {}) {
  const { server, dir } = e2eeServer({ peers, members, ownTimes });
  const e2ee = new E2EE(e2eeOptions);
  const { client } = makeClient({ server, storage, options: { e2ee, ...options } });
  const events = [];
  for (const t of ["e2ee_device_added", "e2ee_device_untrusted", "e2ee_verification_changed", "message", "message_changed", "send_failed"]) client.on(t, (e) => events.push(e));
  const ws = await online(client, { conversations });
  await waitFor(() => dir.published.length > 0, "keys published");
  return { client, server, dir, e2ee, ws, events, storage };
}

test("login publishes a signed device key; private keys stay in storage, never in a request", async () => {
  const bob = await peer(BOB, "bob-1");
  const { client, server, dir, storage } = await setup({ peers: [bob] });
  const pub = dir.published[0];
  assert.equal(pub.suite, c.SUITE);
  assert.equal(pub.key_id, 1);
  assert.equal(c.unb64(pub.identity_key).length, 32);
  assert.ok(c.verify(c.unb64(pub.identity_key), c.deviceKeyInput(USER, DEVICE, 1, c.SUITE, c.unb64(pub.public_key)), c.unb64(pub.key_signature)));
  const stored = await storage.get(`${USER}/e2ee/${DEVICE}/keys`);
  assert.equal(stored.identity.pub, pub.identity_key);
  assert.equal(stored.published, 1);
  const secrets = [stored.identity.priv, ...stored.hpke.map((k) => k.priv)];
  for (const call of server.calls) for (const s of secrets) assert.ok(!JSON.stringify(call.body || "").includes(s), "a private key left the device in " + call.key);
  await client.close();
});

test("a send to an e2ee conversation is sealed to every other device, the sender's own included", async () => {
  const bob1 = await peer(BOB, "bob-1");
  const bob2 = await peer(BOB, "bob-2");
  const alice2 = await peer(USER, "alice-2");
  const { client, dir, ws } = await setup({ peers: [bob1, bob2, alice2] });
  const out = client.send(CONV, "see you at 8", { clientMsgId: "c-1" });
  const f = await waitFor(() => ws.lastOf("send"), "the send frame");
  assert.equal(f.message_type, "encrypted");
  assert.equal(f.body, undefined);
  assert.equal(f.client_msg_id, "c-1");
  assert.deepEqual(f.envelope.keys.map((k) => k.device_id).sort(), ["alice-2", "bob-1", "bob-2"]);
  assert.ok(!f.envelope.keys.some((k) => k.device_id === DEVICE), "never sealed to itself");
  for (const p of [bob1, bob2, alice2]) assert.deepEqual(await openAs(p, f, dir.own), { v: 1, type: "text", body: "see you at 8" });
  assert.ok(!JSON.stringify(f).includes("see you"), "no plaintext in the frame");
  // The ack's copy (no key for the sending device) shows the plaintext from the kept K.
  ws.frame({ type: "ack", id: f.id, message: { id: "m1", conversation_id: CONV, seq: 1, sender_id: USER, sender_device_id: DEVICE, client_msg_id: "c-1", type: "encrypted", body: "", created_at: "2026-11-27T09:30:00Z", envelope: { v: 1, suite: c.SUITE, ciphertext: f.envelope.ciphertext, signature: f.envelope.signature } } });
  const m = await out.acked;
  assert.equal(m.body, "see you at 8");
  assert.equal(m.type, "text");
  assert.deepEqual(m.e2ee, { state: "decrypted" });
  assert.equal(client.messages(CONV)[0].body, "see you at 8");
  await client.close();
});

test("device_mismatch: the lists are refetched and the same client_msg_id, ciphertext and signature go again with the new device's key", async () => {
  const bob1 = await peer(BOB, "bob-1");
  const { client, dir, ws } = await setup({ peers: [bob1] });
  const out = client.send(CONV, "hello", { clientMsgId: "c-2" });
  const f1 = await waitFor(() => ws.lastOf("send"));
  assert.deepEqual(f1.envelope.keys.map((k) => k.device_id), ["bob-1"]);
  const gets = dir.convGets;
  // Bob logs in on a second device just before the send lands.
  const bob2 = await peer(BOB, "bob-2");
  dir.peers.push(bob2);
  dir.bump(BOB);
  ws.frame({ type: "error", id: f1.id, error: { code: "device_mismatch", message: "the envelope does not match the conversation's devices", missing: [{ user_id: BOB, device_id: "bob-2" }], extra: [], stale: [] } });
  const f2 = await waitFor(() => ws.ofType("send").length === 2 && ws.lastOf("send"), "the resend");
  assert.equal(dir.convGets, gets + 1, "the lists were fetched again");
  assert.equal(f2.client_msg_id, "c-2");
  assert.equal(f2.envelope.ciphertext, f1.envelope.ciphertext);
  assert.equal(f2.envelope.signature, f1.envelope.signature);
  assert.deepEqual(f2.envelope.keys.map((k) => k.device_id).sort(), ["bob-1", "bob-2"]);
  assert.deepEqual(f2.envelope.keys.find((k) => k.device_id === "bob-1"), f1.envelope.keys[0], "an unchanged device's key is reused");
  assert.equal((await openAs(bob2, f2, dir.own)).body, "hello");
  ws.frame({ type: "ack", id: f2.id, message: { id: "m1", conversation_id: CONV, seq: 1, sender_id: USER, sender_device_id: DEVICE, client_msg_id: "c-2", type: "encrypted", body: "", created_at: "2026-11-27T09:30:00Z", envelope: { v: 1, suite: c.SUITE, ciphertext: f2.envelope.ciphertext, signature: f2.envelope.signature } } });
  assert.equal((await out.acked).body, "hello");
  await client.close();
});

test("received messages are decrypted live; a tampered one is undecryptable (bad_signature), never shown", async () => {
  const bob = await peer(BOB, "bob-1");
  const { client, dir, ws, events } = await setup({ peers: [bob] });
  const me = { deviceId: DEVICE, keyId: 1, pub: c.unb64(dir.own.public_key) };
  const { message } = await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "hi alice", extra: "ignored" }, to: me });
  ws.frame({ type: "message", message });
  const got = await waitFor(() => events.find((e) => e.type === "message"));
  assert.equal(got.message.body, "hi alice");
  assert.equal(got.message.type, "text");
  assert.deepEqual(got.message.e2ee, { state: "decrypted" });
  assert.equal(got.message.envelope, undefined);

  const bad = (await envelopeFrom(bob, { seq: 2, content: { v: 1, type: "text", body: "evil" }, to: me })).message;
  const other = (await envelopeFrom(bob, { seq: 2, content: { v: 1, type: "text", body: "good" }, to: me })).message;
  bad.envelope.signature = other.envelope.signature; // a signature of another ciphertext
  ws.frame({ type: "message", message: bad });
  const m2 = await waitFor(() => events.filter((e) => e.type === "message")[1]);
  assert.deepEqual(m2.message.e2ee, { state: "undecryptable", reason: "bad_signature" });
  assert.equal(m2.message.body, "");
  assert.equal(m2.message.type, "encrypted");
  assert.equal(dir.keyRequests.length, 0, "a tampered message is not asked for again");
  await client.close();
});

test("a message with no key for this device is kept as undecryptable, asked for again, and merged when the key comes", async () => {
  const bob = await peer(BOB, "bob-1");
  const { client, dir, ws, events } = await setup({ peers: [bob] });
  const me = { deviceId: DEVICE, keyId: 1, pub: c.unb64(dir.own.public_key) };
  const { message, k } = await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "late key" } });
  ws.frame({ type: "message", message });
  const got = await waitFor(() => events.find((e) => e.type === "message"));
  assert.deepEqual(got.message.e2ee, { state: "undecryptable", reason: "no_key" });
  assert.equal(client.messages(CONV).length, 1, "kept, not dropped");
  await waitFor(() => dir.keyRequests.length === 1, "a key request");
  assert.deepEqual(dir.keyRequests[0], { conversationId: CONV, seq: 1 });
  // Bob's device answers: the server repeats the message with the key.
  const again = await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "late key" }, to: me, k });
  const repeat = { ...message, envelope: { ...message.envelope, key: again.message.envelope.key } };
  // (the repeat carries the first ciphertext; its key was sealed for the same K)
  const r = await c.sealKey(k, me.pub, c.keyAad(CONV, bob.deviceId, message.client_msg_id, DEVICE, 1));
  repeat.envelope.key = { device_id: DEVICE, key_id: 1, enc: B(r.enc), sealed: B(r.sealed) };
  ws.frame({ type: "message", message: repeat });
  const changed = await waitFor(() => events.find((e) => e.type === "message_changed"));
  assert.equal(changed.message.body, "late key");
  assert.deepEqual(client.messages(CONV).map((m) => [m.seq, m.body, m.e2ee.state]), [[1, "late key", "decrypted"]]);
  await client.close();
});

test("a message from before this device existed is no_key but not asked for", async () => {
  const bob = await peer(BOB, "bob-1");
  const { client, dir, ws, events } = await setup({ peers: [bob] });
  const { message } = await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "old" }, createdAt: "2025-06-01T00:00:00Z" });
  ws.frame({ type: "message", message });
  const got = await waitFor(() => events.find((e) => e.type === "message"));
  assert.deepEqual(got.message.e2ee, { state: "undecryptable", reason: "no_key" });
  await flush(20);
  assert.equal(dir.keyRequests.length, 0);
  await client.close();
});

// The device's created_at in the directory is when the device was created,
// the time the server's key-request check uses; a device that published its
// keys after a message (but existed before it) asks for it.
test("a message from after this device was created but before it published its keys is asked for", async () => {
  const bob = await peer(BOB, "bob-1");
  const { client, dir, ws, events } = await setup({ peers: [bob], ownTimes: { created_at: "2026-11-01T00:00:00Z", keys_published_at: "2026-12-01T00:00:00Z" } });
  const { message } = await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "before the keys" }, createdAt: "2026-11-27T09:30:00Z" });
  ws.frame({ type: "message", message });
  const got = await waitFor(() => events.find((e) => e.type === "message"));
  assert.deepEqual(got.message.e2ee, { state: "undecryptable", reason: "no_key" });
  await waitFor(() => dir.keyRequests.length === 1, "a key request");
  assert.deepEqual(dir.keyRequests[0], { conversationId: CONV, seq: 1 });
  await client.close();
});

// A server without keys_published_at put the publish time in created_at:
// it tells nothing about when the device was created, so the module asks
// and leaves the decision to the server.
test("an entry without keys_published_at (an older server): created_at is not taken for the device's creation", async () => {
  const bob = await peer(BOB, "bob-1");
  const { client, dir, ws, events } = await setup({ peers: [bob], ownTimes: { created_at: "2026-12-01T00:00:00Z", keys_published_at: undefined } });
  const { message } = await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "before the keys" }, createdAt: "2026-11-27T09:30:00Z" });
  ws.frame({ type: "message", message });
  await waitFor(() => events.find((e) => e.type === "message"));
  await waitFor(() => dir.keyRequests.length === 1, "a key request");
  await client.close();
});

// A sender's device seals a key only to a device it finds in the key
// directory: a message opened before this device's first publish is done
// (the first sync after a login) is asked for once the keys are out.
test("a key request waits for this device's keys to be published", async (t) => {
  const bob = await peer(BOB, "bob-1");
  let release;
  const { server, dir } = e2eeServer({ peers: [bob], holdPublish: new Promise((r) => (release = r)) });
  const { client } = makeClient({ server, options: { e2ee: new E2EE() } });
  t.after(() => {
    release();
    return client.close();
  });
  const events = [];
  client.on("message", (e) => events.push(e));
  const ws = await online(client, { conversations: [entry(E2EE_CONV)] });
  const { message } = await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "before the keys" } });
  ws.frame({ type: "message", message });
  const got = await waitFor(() => events.find((e) => e.type === "message"));
  assert.deepEqual(got.message.e2ee, { state: "undecryptable", reason: "no_key" });
  await flush(20);
  assert.deepEqual(dir.order, [], "no key request while the keys are not published");
  release();
  await waitFor(() => dir.keyRequests.length === 1, "a key request");
  assert.deepEqual(dir.order, ["publish", "key_request"]);
});

test("sync and REST history are decrypted too, own messages from the kept content keys", async () => {
  const bob = await peer(BOB, "bob-1");
  const storage = new MemoryStorage();
  const { client, dir, ws } = await setup({ peers: [bob], storage });
  const me = { deviceId: DEVICE, keyId: 1, pub: c.unb64(dir.own.public_key) };
  // An own send, acked: its K is kept for display.
  const out = client.send(CONV, "mine", { clientMsgId: "own-1" });
  const f = await waitFor(() => ws.lastOf("send"));
  const own = { id: "m1", conversation_id: CONV, seq: 1, sender_id: USER, sender_device_id: DEVICE, client_msg_id: "own-1", type: "encrypted", body: "", created_at: "2026-11-27T09:30:00Z", envelope: { v: 1, suite: c.SUITE, ciphertext: f.envelope.ciphertext, signature: f.envelope.signature } };
  ws.frame({ type: "ack", id: f.id, message: structuredClone(own) });
  await out.acked;
  const theirs = (await envelopeFrom(bob, { seq: 2, content: { v: 1, type: "text", body: "theirs" }, to: me })).message;
  await client.close();

  // A restart: the same storage, a full sync with both messages.
  const { server } = e2eeServer({ peers: [bob] });
  server.routes["GET /v1/conversations/" + CONV + "/messages"] = () => [200, { messages: [structuredClone(own), structuredClone(theirs)] }];
  const b = makeClient({ server, storage, options: { e2ee: new E2EE() } }).client;
  await b.restore();
  const conn = b.connect();
  const ws2 = await waitFor(() => FakeWebSocket.last);
  ready(ws2);
  await conn;
  await waitFor(() => ws2.lastOf("sync"));
  syncReply(ws2, { full_state: true, conversations: [entry({ ...E2EE_CONV, last_seq: 2 }, [structuredClone(own), structuredClone(theirs)])] });
  // Seq 1 was held before the restart (messages are held in memory: the app keeps what it shows).
  await waitFor(() => b.messages(CONV).length === 1, "the new message");
  assert.deepEqual(b.messages(CONV).map((m) => [m.seq, m.body, m.e2ee.state]), [[2, "theirs", "decrypted"]]);
  const h = await b.history(CONV, { before: 3 });
  assert.deepEqual(h.messages.map((m) => m.body), ["mine", "theirs"]);
  await b.close();
});

test("a key_request frame is answered: K sealed to the requesting device at its current key", async () => {
  const bob1 = await peer(BOB, "bob-1");
  const { client, dir, ws } = await setup({ peers: [bob1] });
  const out = client.send(CONV, "for later devices", { clientMsgId: "c-9" });
  const f = await waitFor(() => ws.lastOf("send"));
  ws.frame({ type: "ack", id: f.id, message: { id: "m7", conversation_id: CONV, seq: 7, sender_id: USER, sender_device_id: DEVICE, client_msg_id: "c-9", type: "encrypted", body: "", created_at: "2026-11-27T09:30:00Z", envelope: { v: 1, suite: c.SUITE, ciphertext: f.envelope.ciphertext, signature: f.envelope.signature } } });
  await out.acked;
  const bob2 = await peer(BOB, "bob-2");
  bob2.keyId = 3;
  dir.peers.push(bob2);
  ws.frame({ type: "key_request", conversation_id: CONV, seq: 7, user_id: BOB, device_id: "bob-2" });
  await waitFor(() => dir.keyPuts.length === 1, "the keys PUT");
  const put = dir.keyPuts[0];
  assert.deepEqual([put.conversationId, put.seq, put.keys.length, put.keys[0].device_id, put.keys[0].key_id], [CONV, 7, 1, "bob-2", 3]);
  const content = await openAs(bob2, { ...f, envelope: { ...f.envelope, keys: put.keys } }, dir.own);
  assert.equal(content.body, "for later devices");
  // A request for a message this device did not send is ignored.
  ws.frame({ type: "key_request", conversation_id: CONV, seq: 8, user_id: BOB, device_id: "bob-2" });
  await flush(50);
  assert.equal(dir.keyPuts.length, 1);
  await client.close();
});

test("device_list frames: a new device is announced; a changed identity key makes the device untrusted and sends fail", async () => {
  const bob1 = await peer(BOB, "bob-1");
  const { client, dir, ws, events } = await setup({ peers: [bob1] });
  client.send(CONV, "first", { clientMsgId: "c-1" }); // fetches the lists
  await waitFor(() => ws.lastOf("send"));
  const bob2 = await peer(BOB, "bob-2");
  dir.peers.push(bob2);
  ws.frame({ type: "device_list", user_id: BOB, device_list_version: dir.bump(BOB) });
  const added = await waitFor(() => events.find((e) => e.type === "e2ee_device_added"));
  assert.deepEqual([added.userId, added.deviceId, added.conversationIds], [BOB, "bob-2", [CONV]]);

  // The server now claims bob-1 has another identity key.
  const forged = await peer(BOB, "bob-1");
  dir.peers[0] = forged;
  ws.frame({ type: "device_list", user_id: BOB, device_list_version: dir.bump(BOB) });
  const bad = await waitFor(() => events.find((e) => e.type === "e2ee_device_untrusted"));
  assert.deepEqual([bad.userId, bad.deviceId, bad.reason], [BOB, "bob-1", "identity_changed"]);
  const out = client.send(CONV, "second", { clientMsgId: "c-2" });
  await assert.rejects(out.acked, (e) => e.code === "device_untrusted");
  assert.equal(ws.ofType("send").filter((f) => f.client_msg_id === "c-2").length, 0, "nothing sealed to a forged key");
  await client.close();
});

test("safety numbers match on both sides; verify, then a new device of the contact warns", async () => {
  const bob1 = await peer(BOB, "bob-1");
  const { client, dir, e2ee, ws, events } = await setup({ peers: [bob1] });
  const sn = await e2ee.safetyNumber(BOB);
  assert.match(sn, /^(\d{5} ){11}\d{5}$/);
  const fa = c.fingerprint(USER, [c.unb64(dir.own.identity_key)]);
  const fb = c.fingerprint(BOB, [bob1.id.pub]);
  assert.equal(sn, c.safetyNumber({ userId: BOB, fingerprint: fb }, { userId: USER, fingerprint: fa }), "the same string from Bob's side");
  assert.equal(await e2ee.verification(BOB), "unverified");
  await e2ee.verify(BOB);
  assert.equal(await e2ee.verification(BOB), "verified");
  const bob2 = await peer(BOB, "bob-2");
  dir.peers.push(bob2);
  ws.frame({ type: "device_list", user_id: BOB, device_list_version: dir.bump(BOB) });
  const w = await waitFor(() => events.find((e) => e.type === "e2ee_verification_changed"));
  assert.equal(w.userId, BOB);
  assert.equal(await e2ee.verification(BOB), "changed");
  assert.notEqual(await e2ee.safetyNumber(BOB), sn);
  await client.close();
});

test("rotation: a new key every 7 days, the old private key erased 7 days after its successor was published", async (t) => {
  const tick = useClock(t);
  const bob = await peer(BOB, "bob-1");
  const storage = new MemoryStorage();
  const { client, server, dir } = await setup({ peers: [bob], storage });
  const me1 = { deviceId: DEVICE, keyId: 1, pub: c.unb64(dir.own.public_key) };
  for (let i = 0; i < 7 * 24; i++) await tick(3600000);
  await waitFor(() => dir.published.length === 2, "the rotated key");
  const p2 = dir.published[1];
  assert.equal(p2.key_id, 2);
  assert.equal(p2.identity_key, dir.published[0].identity_key, "the identity never changes");
  assert.notEqual(p2.public_key, dir.published[0].public_key);
  // Within the grace, a message sealed to key 1 still opens (read through REST history: the
  // fake socket is long dead after a simulated week without pongs).
  let page = [];
  server.routes["GET /v1/conversations/" + CONV + "/messages"] = () => [200, { messages: structuredClone(page) }];
  page = [(await envelopeFrom(bob, { seq: 1, content: { v: 1, type: "text", body: "to key 1" }, to: me1, createdAt: "2026-12-01T00:00:00Z" })).message];
  assert.deepEqual((await client.history(CONV)).messages.map((m) => [m.body, m.e2ee.state]), [["to key 1", "decrypted"]]);
  for (let i = 0; i < 7 * 24 + 1; i++) await tick(3600000);
  const stored = await storage.get(`${USER}/e2ee/${DEVICE}/keys`);
  assert.ok(!stored.hpke.some((k) => k.keyId === 1), "key 1 is erased");
  assert.ok(stored.hpke.some((k) => k.keyId === 2));
  page = [(await envelopeFrom(bob, { seq: 2, content: { v: 1, type: "text", body: "to key 1, too late" }, to: me1, createdAt: "2026-12-01T00:00:00Z" })).message];
  const [late] = (await client.history(CONV)).messages;
  assert.deepEqual(late.e2ee, { state: "undecryptable", reason: "no_key" });
  await client.close();
});

test("a send too large for one frame goes over REST with the same client_msg_id", async () => {
  const peers = [];
  for (let i = 0; i < 6; i++) peers.push(await peer(CAROL, "carol-" + i));
  const { server, dir } = e2eeServer({ peers, members: { [CONV]: [USER, CAROL] } });
  let posted;
  server.routes[`POST /v1/conversations/${CONV}/messages`] = (body) => {
    posted = body;
    return [201, { message: { id: "m1", conversation_id: CONV, seq: 1, sender_id: USER, sender_device_id: DEVICE, client_msg_id: body.client_msg_id, type: "encrypted", body: "", created_at: "2026-11-27T09:30:00Z", envelope: { v: 1, suite: body.envelope.suite, ciphertext: body.envelope.ciphertext, signature: body.envelope.signature } } }];
  };
  const { client } = makeClient({ server, options: { e2ee: new E2EE() } });
  await client.login("alice", "correct horse battery");
  const conn = client.connect();
  const ws = await waitFor(() => FakeWebSocket.last);
  ready(ws, { max_frame_bytes: 1500 });
  await conn;
  await waitFor(() => ws.lastOf("sync"));
  // Sent at once, before the sync result is applied: sealed when the conversation is known to be e2ee.
  const out = client.send(CONV, "x".repeat(200), { clientMsgId: "big-1" });
  syncReply(ws, { conversations: [entry({ ...E2EE_CONV, members: [member(USER), member(CAROL)] })] });
  const m = await out.acked;
  assert.equal(posted.client_msg_id, "big-1");
  assert.equal(posted.type, "encrypted");
  assert.equal(posted.envelope.keys.length, 6);
  assert.equal(ws.ofType("send").length, 0, "not on the socket");
  assert.equal(m.body, "x".repeat(200));
  assert.ok(dir.published.length);
  await client.close();
});
