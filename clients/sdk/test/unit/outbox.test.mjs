// The outbox: written before the first attempt, resent with the same
// client_msg_id after reconnects and restarts, refusals, retries, in-flight cap.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../dist/esm/index.js";
import { FakeWebSocket, makeClient, online, ready, useClock, waitFor, flush, syncReply, CONV, USER, DEVICE, convObj, msg, entry } from "./fakes.mjs";

function ackFor(send, seq) {
  return { type: "ack", id: send.id, message: msg(seq, { sender_id: USER, sender_device_id: DEVICE, client_msg_id: send.client_msg_id, body: send.body }) };
}

test("the outbox entry is stored before the first send; resent with the same client_msg_id after a reconnect", async (t) => {
  const tick = useClock(t);
  const storage = new MemoryStorage();
  const { client } = makeClient({ storage });
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  let storedAtSend;
  ws.onSend = (f) => {
    if (f.type === "send") storedAtSend = storage.get(USER + "/outbox/" + f.client_msg_id);
  };
  const out = client.send(CONV, "hi there", { clientMsgId: "cm-1" });
  assert.equal(out.clientMsgId, "cm-1");
  assert.equal(out.status.get().state, "sending");
  const first = await waitFor(() => ws.lastOf("send"), "a send frame");
  const stored = await storedAtSend;
  assert.equal(stored && stored.body, "hi there", "stored before the frame went out");
  assert.deepEqual([first.client_msg_id, first.conversation_id, first.message_type], ["cm-1", CONV, "text"]);
  assert.deepEqual(client.messages(CONV).map((m) => [m.seq, m.id, m.clientMsgId]), [[0, "", "cm-1"]]);

  ws.serverClose(1006); // the ack is lost
  await tick(1000);
  const ws2 = await waitFor(() => FakeWebSocket.all[1]);
  ready(ws2);
  await waitFor(() => ws2.lastOf("sync"));
  assert.equal(ws2.ofType("send").length, 0, "no send before the sync pass is done");
  syncReply(ws2, { position: "pos-2" });
  const again = await waitFor(() => ws2.lastOf("send"), "the resend");
  assert.equal(again.client_msg_id, "cm-1");
  assert.notEqual(again.id, undefined);
  ws2.frame(ackFor(again, 1));
  const m = await out.acked;
  assert.equal(m.seq, 1);
  assert.equal(out.status.get().state, "sent");
  await flush();
  assert.equal(client.outbox().length, 0);
  assert.equal(await storage.get(USER + "/outbox/cm-1"), undefined, "removed from storage on ack");
  assert.deepEqual(client.messages(CONV).map((m) => m.seq), [1]);
  await client.close();
});

test("a new client restores the outbox from storage and resends with the same client_msg_id", async (t) => {
  useClock(t);
  const storage = new MemoryStorage();
  const a = makeClient({ storage }).client;
  await a.login("alice", "correct horse battery");
  const out = a.send(CONV, "from before the restart");
  await flush();
  await a.close(); // never connected: the message waits in storage

  const { client } = makeClient({ storage });
  assert.equal(await client.restore(), true);
  const restored = client.outbox();
  assert.deepEqual(restored.map((o) => [o.clientMsgId, o.body, o.conversationId]), [[out.clientMsgId, "from before the restart", CONV]]);
  const ws = await online(client, { restore: true, conversations: [entry(convObj(CONV, 0))] });
  const s = await waitFor(() => ws.lastOf("send"), "the restored send");
  assert.equal(s.client_msg_id, out.clientMsgId);
  assert.equal(s.body, "from before the restart");
  ws.frame(ackFor(s, 1));
  assert.equal((await restored[0].acked).seq, 1);
  await client.close();
});

test("refused sends leave the outbox with send_failed; rate_limited is retried after retry_after", async (t) => {
  const tick = useClock(t);
  const storage = new MemoryStorage();
  const { client } = makeClient({ storage });
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const failed = [];
  client.on("send_failed", (e) => failed.push([e.clientMsgId, e.error.code]));
  const bad = client.send(CONV, "x", { clientMsgId: "bad" });
  const slow = client.send(CONV, "y", { clientMsgId: "slow" });
  await waitFor(() => ws.ofType("send").length === 2);
  const [s1, s2] = ws.ofType("send");
  ws.frame({ type: "error", id: s1.id, error: { code: "conversation_not_found", message: "conversation not found" } });
  ws.frame({ type: "error", id: s2.id, error: { code: "rate_limited", message: "slow down", retry_after: 3 } });
  await assert.rejects(bad.acked, (e) => e.code === "conversation_not_found");
  assert.equal(bad.status.get().state, "failed");
  assert.deepEqual(failed, [["bad", "conversation_not_found"]]);
  assert.equal(client.conversation(CONV), undefined, "conversation_not_found drops the conversation locally");
  await flush();
  assert.equal(await storage.get(USER + "/outbox/bad"), undefined);
  assert.deepEqual(client.outbox().map((o) => o.clientMsgId), ["slow"]);
  await tick(2900);
  assert.equal(ws.ofType("send").length, 2, "waits retry_after");
  await tick(200);
  const retry = ws.ofType("send")[2];
  assert.equal(retry && retry.client_msg_id, "slow");
  ws.frame(ackFor(retry, 1));
  assert.equal((await slow.acked).seq, 1);
  await client.close();
});

test("at most maxInFlight sends wait for their ack", async (t) => {
  useClock(t);
  const { client } = makeClient({ options: { maxInFlight: 3 } });
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  for (let i = 0; i < 5; i++) client.send(CONV, "m" + i);
  await flush();
  assert.equal(ws.ofType("send").length, 3);
  ws.frame(ackFor(ws.ofType("send")[0], 1));
  await flush();
  assert.equal(ws.ofType("send").length, 4);
  assert.deepEqual(ws.ofType("send").map((s) => s.body), ["m0", "m1", "m2", "m3"], "oldest first");
  await client.close();
});

test("the own message frame before the ack settles the send once", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const events = [];
  client.on("message", (e) => events.push(e.message.seq));
  const out = client.send(CONV, "hello");
  const s = await waitFor(() => ws.lastOf("send"));
  const a = ackFor(s, 1);
  ws.frame({ type: "message", message: a.message });
  ws.frame(a);
  assert.equal((await out.acked).seq, 1);
  await flush();
  assert.deepEqual(events, [1]);
  assert.deepEqual(client.messages(CONV).map((m) => m.seq), [1]);
  await client.close();
});

test("a send waits for its outbox write, even when something else pumps the queue", async (t) => {
  useClock(t);
  /** GatedStorage holds outbox writes of "b" until released. */
  class GatedStorage extends MemoryStorage {
    gate = null;
    async set(k, v) {
      if (k.endsWith("/outbox/b")) await new Promise((r) => (this.gate = r));
      return super.set(k, v);
    }
  }
  const storage = new GatedStorage();
  const { client } = makeClient({ storage });
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  client.send(CONV, "first", { clientMsgId: "a" });
  const a = await waitFor(() => ws.lastOf("send"));
  client.send(CONV, "second", { clientMsgId: "b" });
  await waitFor(() => storage.gate, "the write of b started");
  ws.frame(ackFor(a, 1)); // the ack pumps the queue
  await flush();
  assert.deepEqual(ws.ofType("send").map((s) => s.client_msg_id), ["a"], "b is not sent before it is stored");
  storage.gate();
  await waitFor(() => ws.ofType("send").length === 2, "b sent once stored");
  assert.equal(await storage.get(USER + "/outbox/b").then((e) => e.body), "second");
  await client.close();
});

test("sends wait for the sync pass of the connection", async (t) => {
  useClock(t);
  const { client } = makeClient();
  await client.login("alice", "correct horse battery");
  const connected = client.connect();
  const ws = await waitFor(() => FakeWebSocket.last);
  ready(ws);
  await connected;
  await waitFor(() => ws.lastOf("sync"));
  client.send(CONV, "early");
  await flush();
  assert.equal(ws.ofType("send").length, 0);
  syncReply(ws, { conversations: [entry(convObj(CONV, 0))] });
  await waitFor(() => ws.lastOf("send"), "the send after the sync");
  await client.close();
});

test("a message over max_frame_bytes fails at once with payload_too_large", async (t) => {
  useClock(t);
  const { client } = makeClient();
  await client.login("alice", "correct horse battery");
  const connected = client.connect();
  const ws = await waitFor(() => FakeWebSocket.last);
  ready(ws, { max_frame_bytes: 1000 });
  await connected;
  syncReply(ws, { conversations: [entry(convObj(CONV, 0))] });
  const failed = [];
  client.on("send_failed", (e) => failed.push(e.error.code));
  const big = client.send(CONV, "é".repeat(450)); // 900 bytes of body in UTF-8, over 1000 with the frame
  const small = client.send(CONV, "ok");
  await assert.rejects(big.acked, (e) => e.code === "payload_too_large");
  assert.deepEqual(failed, ["payload_too_large"]);
  await waitFor(() => ws.lastOf("send"));
  assert.deepEqual(ws.ofType("send").map((s) => s.body), ["ok"]);
  assert.equal(small.status.get().state, "sending");
  await client.close();
});
