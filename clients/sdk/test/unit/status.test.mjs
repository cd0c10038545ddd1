// Per-message status from acks, receipts and member watermarks; typing,
// presence, the event hub.
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeClient, online, useClock, waitFor, flush, CONV, CONV2, USER, DEVICE, BOB, CAROL, DAVE, convObj, member, msg, entry } from "./fakes.mjs";

const brief = (s) => `${s.state} ${s.deliveredCount}/${s.readCount}/${s.memberCount}`;

async function sendAndAck(client, ws, cid, seq) {
  const out = client.send(cid, "mine");
  const s = await waitFor(() => ws.ofType("send").find((f) => f.client_msg_id === out.clientMsgId));
  ws.frame({ type: "ack", id: s.id, message: msg(seq, { conversation_id: cid, sender_id: USER, sender_device_id: DEVICE, client_msg_id: s.client_msg_id }) });
  await out.acked;
  return out;
}

test("status in a direct conversation: sending, sent, delivered, read; own watermarks excluded", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const seen = [];
  const out = client.send(CONV, "hi");
  out.status.subscribe((s) => seen.push(brief(s)));
  const s = await waitFor(() => ws.lastOf("send"));
  ws.frame({ type: "ack", id: s.id, message: msg(1, { sender_id: USER, sender_device_id: DEVICE, client_msg_id: s.client_msg_id }) });
  await out.acked;
  // My own devices' watermarks never count.
  ws.frame({ type: "receipt", conversation_id: CONV, user_id: USER, device_id: DEVICE, kind: "read", seq: 1 });
  ws.frame({ type: "receipt", conversation_id: CONV, user_id: BOB, device_id: "dev-bob", kind: "delivered", seq: 1 });
  ws.frame({ type: "receipt", conversation_id: CONV, user_id: BOB, device_id: "dev-bob", kind: "read", seq: 1 });
  assert.deepEqual(seen, ["sending 0/0/1", "sent 0/0/1", "delivered 1/0/1", "read 1/1/1"]);
  assert.equal(client.status$(CONV, 1).get().state, "read");
  await client.close();
});

test("status in a group: delivered to k of n, read by k of n", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const g = convObj(CONV2, 0, [member(USER), member(BOB), member(CAROL), member(DAVE)], "group");
  const ws = await online(client, { conversations: [entry(g)] });
  await sendAndAck(client, ws, CONV2, 1);
  const st = client.status$(CONV2, 1);
  const seen = [];
  const off = st.subscribe((s) => seen.push(brief(s)));
  const receipt = (user, kind, seq) => ws.frame({ type: "receipt", conversation_id: CONV2, user_id: user, kind, seq });
  receipt(BOB, "delivered", 1);
  receipt(CAROL, "read", 1); // reading implies having it
  receipt(BOB, "delivered", 1); // no change: no notification
  receipt(DAVE, "delivered", 1);
  receipt(BOB, "read", 1);
  receipt(DAVE, "read", 2); // a later watermark covers seq 1
  assert.deepEqual(seen, ["sent 0/0/3", "sent 1/0/3", "sent 2/1/3", "delivered 3/1/3", "delivered 3/2/3", "read 3/3/3"]);
  off();
  receipt(BOB, "read", 5);
  assert.equal(seen.length, 6, "unsubscribed");
  await client.close();
});

test("watermarks from sync and conversation frames count, and never go down", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const g = convObj(CONV2, 3, [member(USER, 3, 3), member(BOB, 2, 3), member(CAROL, 0, 1)], "group");
  const ws = await online(client, { conversations: [entry(g, [msg(1, { conversation_id: CONV2, sender_id: USER }), msg(2, { conversation_id: CONV2, sender_id: USER })])] });
  assert.equal(brief(client.status$(CONV2, 2).get()), "sent 1/1/2");
  assert.equal(brief(client.status$(CONV2, 1).get()), "delivered 2/1/2");
  // An older copy of the conversation (a frame that was overtaken) does not lower them.
  ws.frame({ type: "conversation", action: "role_changed", conversation: convObj(CONV2, 3, [member(USER), member(BOB), member(CAROL)], "group"), user_ids: [BOB] });
  assert.equal(brief(client.status$(CONV2, 1).get()), "delivered 2/1/2");
  await client.close();
});

test("a read receipt of my own user clears unread", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 2), [msg(1), msg(2)], { unread_count: 2 })] });
  ws.frame({ type: "receipt", conversation_id: CONV, user_id: USER, device_id: "other-device", kind: "read", seq: 1 });
  assert.equal(client.conversation(CONV).unreadCount, 1);
  assert.equal(client.conversation(CONV).readSeq, 1);
  ws.frame({ type: "receipt", conversation_id: CONV, user_id: USER, kind: "read", seq: 2 });
  assert.equal(client.conversation(CONV).unreadCount, 0);
  await client.close();
});

test("typing: users expire after expires_in; outgoing start is throttled; stop after a send", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const events = [];
  client.on("typing", (e) => events.push(`${e.userId === BOB ? "bob" : e.userId} ${e.state}`));
  ws.frame({ type: "typing", conversation_id: CONV, user_id: BOB, state: "start", expires_in: 6 });
  assert.deepEqual(client.typingUsers(CONV), [BOB]);
  await tick(4000);
  ws.frame({ type: "typing", conversation_id: CONV, user_id: BOB, state: "start", expires_in: 6 }); // renewed
  await tick(5000);
  assert.deepEqual(client.typingUsers(CONV), [BOB], "the second start counts from its arrival");
  await tick(1000);
  assert.deepEqual(client.typingUsers(CONV), []);
  assert.deepEqual(events, ["bob start", "bob start", "bob stop"]);

  client.typing(CONV, "start");
  client.typing(CONV, "start");
  await tick(2000);
  client.typing(CONV, "start");
  assert.equal(ws.ofType("typing").length, 1, "one start per 3 s");
  await tick(1000);
  client.typing(CONV, "start");
  assert.equal(ws.ofType("typing").length, 2);
  client.send(CONV, "done typing");
  assert.equal(ws.lastOf("typing").state, "stop");
  await client.close();
});

test("typing: a typer's message ends their typing; a stop needs a start; never over the server's typing limit", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const events = [];
  client.on("typing", (e) => events.push(`${e.userId === BOB ? "bob" : e.userId} ${e.state}`));
  ws.frame({ type: "typing", conversation_id: CONV, user_id: BOB, state: "start", expires_in: 6 });
  ws.frame({ type: "message", message: msg(1, { sender_id: BOB }) });
  assert.deepEqual(client.typingUsers(CONV), [], "bob's message ends his typing");
  assert.deepEqual(events, ["bob start", "bob stop"]);

  client.typing(CONV, "stop");
  assert.equal(ws.ofType("typing").length, 0, "no stop without a start");
  // Type, send, type, send... quickly: the server allows 2 typing frames a
  // second (burst 5); the client must stay under it rather than earn
  // rate_limited errors.
  for (let i = 0; i < 10; i++) {
    client.typing(CONV, "start");
    client.send(CONV, "quick " + i);
    await tick(100);
  }
  const sent = ws.ofType("typing").length;
  assert.ok(sent >= 4 && sent <= 6, `typing frames in 1 s: ${sent}, want at most the burst plus the refill`);
  await tick(3000);
  client.typing(CONV, "start");
  assert.equal(ws.lastOf("typing").state, "start", "the bucket refills");
  await client.close();
});

test("presence: unknown until a frame says", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client);
  assert.deepEqual(client.presence(BOB), { state: "unknown" });
  ws.frame({ type: "presence", user_id: BOB, state: "online" });
  assert.equal(client.presence(BOB).state, "online");
  ws.frame({ type: "presence", user_id: BOB, state: "offline", last_seen: "2026-11-27T09:30:00Z" });
  assert.deepEqual(client.presence(BOB), { state: "offline", lastSeen: "2026-11-27T09:30:00Z" });
  await client.close();
});

test("events(): every event in order; bounded; break unsubscribes", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const it = client.events(3);
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  // Far more than 3 events happened: only the newest 3 are kept.
  const got = [];
  for (let i = 0; i < 3; i++) got.push((await it.next()).value.type);
  assert.deepEqual(got, ["conversation", "status", "synced"]);
  const later = (async () => {
    const types = [];
    for await (const e of client.events()) {
      types.push(e.type + (e.message ? ":" + e.message.seq : ""));
      if (types.length === 2) break;
    }
    return types;
  })();
  await flush();
  ws.frame({ type: "message", message: msg(1) });
  ws.frame({ type: "message", message: msg(2) });
  assert.deepEqual(await later, ["message:1", "message:2"]);
  await it.return();
  assert.equal((await it.next()).done, true);
  const off = client.on("message", () => assert.fail("unsubscribed handler called"));
  off();
  ws.frame({ type: "message", message: msg(3) });
  await client.close();
});
