// The section-7 algorithm: sync paging, position stored after apply,
// full-state drops, invalid positions, backfill, gappy re-reads, live gaps,
// dedupe and the merge rule, delivered reports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../dist/esm/index.js";
import {
  FakeWebSocket, makeClient, online, ready, useClock, waitFor, flush, syncReply,
  CONV, CONV2, USER, BOB, convObj, msg, entry,
} from "./fakes.mjs";

/** RecordingStorage logs every set, in order. */
class RecordingStorage extends MemoryStorage {
  log = [];
  async set(k, v) {
    this.log.push([k, structuredClone(v)]);
    return super.set(k, v);
  }
}

const seqs = (client, id = CONV) => client.messages(id).map((m) => m.seq);

test("sync pages: has_more asks again with the new position; the position is stored after the page's state", async (t) => {
  useClock(t);
  const storage = new RecordingStorage();
  const { client } = makeClient({ storage });
  await client.login("alice", "correct horse battery");
  const connected = client.connect();
  const ws = await waitFor(() => FakeWebSocket.last);
  ready(ws);
  await connected;
  const first = ws.lastOf("sync");
  assert.equal(first.position, "");
  assert.equal(first.limit, 50);
  ws.frame({ type: "sync_result", id: first.id, position: "p1", has_more: true, full_state: true,
    conversations: [entry(convObj(CONV, 2), [msg(1), msg(2)], { unread_count: 2 })] });
  const second = await waitFor(() => ws.ofType("sync")[1], "a second page request");
  assert.equal(second.position, "p1");
  ws.frame({ type: "sync_result", id: second.id, position: "p2", has_more: false,
    conversations: [entry(convObj(CONV2, 0, undefined, "group"))] });
  await flush();
  assert.deepEqual(seqs(client), [1, 2]);
  assert.equal(client.conversation(CONV).unreadCount, 2);
  assert.equal(client.conversation(CONV2).kind, "group");
  const keys = storage.log.map(([k]) => k);
  const p1 = keys.indexOf(USER + "/position");
  assert.ok(p1 > keys.indexOf(USER + "/conv/" + CONV), "page 1's conversation was written before its position");
  assert.deepEqual(storage.log[p1][1], "p1");
  const p2 = keys.lastIndexOf(USER + "/position");
  assert.ok(p2 > keys.indexOf(USER + "/conv/" + CONV2), "page 2's conversation was written before its position");
  assert.equal(await storage.get(USER + "/position"), "p2");
  const held = await storage.get(USER + "/conv/" + CONV);
  assert.equal(held.heldUpto, 2);
  await client.close();
});

test("a restarted client resumes from the stored position", async (t) => {
  useClock(t);
  const storage = new MemoryStorage();
  const a = makeClient({ storage }).client;
  await online(a, { conversations: [entry(convObj(CONV, 1), [msg(1)])] });
  await a.close();
  const { client } = makeClient({ storage });
  const ws = await online(client, { restore: true });
  assert.equal(ws.ofType("sync")[0].position, "pos-1");
  assert.equal(client.conversation(CONV).lastSeq, 1);
  await client.close();
});

test("a full-state pass drops the conversations it did not list", async (t) => {
  const tick = useClock(t);
  const storage = new MemoryStorage();
  const { client } = makeClient({ storage });
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0)), entry(convObj(CONV2, 0))] });
  assert.equal(client.conversations().length, 2);
  const removed = [];
  client.on("conversation_removed", (e) => removed.push(e.conversationId));
  ws.serverClose(1006);
  await tick(1000);
  const ws2 = await waitFor(() => FakeWebSocket.all[1]);
  ready(ws2);
  await waitFor(() => ws2.lastOf("sync"));
  // The store went back behind the position: a full state listing only CONV2.
  syncReply(ws2, { position: "pos-2", full_state: true, conversations: [entry(convObj(CONV2, 0))] });
  await flush();
  assert.deepEqual(removed, [CONV]);
  assert.deepEqual(client.conversations().map((c) => c.id), [CONV2]);
  assert.equal(await storage.get(USER + "/conv/" + CONV), undefined);
  await client.close();
});

test("a position the server refuses restarts the sync from the start", async (t) => {
  useClock(t);
  const storage = new MemoryStorage();
  await storage.set("tokens", { userId: USER, deviceId: "d", accessToken: "at", refreshToken: "rt", accessExpiresAt: Date.now() + 900000, lifetimeMs: 900000 });
  await storage.set(USER + "/position", "bogus");
  const { client } = makeClient({ storage });
  await client.restore();
  client.connect();
  const ws = await waitFor(() => FakeWebSocket.last);
  ready(ws);
  const s1 = await waitFor(() => ws.lastOf("sync"));
  assert.equal(s1.position, "bogus");
  ws.frame({ type: "error", id: s1.id, error: { code: "invalid_request", message: "position is not one this server issued" } });
  const s2 = await waitFor(() => ws.ofType("sync")[1]);
  assert.equal(s2.position, "");
  await client.close();
});

test("backfill: a sync page above held_upto + 1 is filled with history after held_upto", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 2), [msg(1), msg(2)])] });
  ws.serverClose(1006);
  await tick(1000);
  const ws2 = await waitFor(() => FakeWebSocket.all[1]);
  ready(ws2);
  await waitFor(() => ws2.lastOf("sync"));
  const synced = [];
  client.on("synced", () => synced.push(1));
  const order = [];
  client.on("message", (e) => order.push(e.message.seq));
  syncReply(ws2, { position: "pos-2", conversations: [entry(convObj(CONV, 10), [msg(9), msg(10)], { unread_count: 7 })] });
  const h = await waitFor(() => ws2.lastOf("history"), "a backfill request");
  assert.equal(h.after, 2);
  assert.equal(h.before, undefined);
  assert.equal(synced.length, 0, "not synced before the backfill is done");
  // 3..8, but 5 expired meanwhile.
  ws2.frame({ type: "history_result", id: h.id, conversation_id: CONV, messages: [3, 4, 6, 7, 8].map((s) => msg(s)) });
  await flush();
  assert.deepEqual(order, [3, 4, 6, 7, 8, 9, 10], "messages in seq order, once");
  assert.equal(client.conversation(CONV).unreadCount, 7, "the server's count; backfilled messages are not counted twice");
  assert.deepEqual(seqs(client), [1, 2, 3, 4, 6, 7, 8, 9, 10]);
  assert.equal(synced.length, 1);
  assert.equal(ws2.lastOf("delivered").seq, 10, "delivered held_upto after the sync");
  await client.close();
});

test("a gappy conversation (more_messages) re-reads what it holds below the page", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 5), [1, 2, 3, 4, 5].map((s) => msg(s)))] });
  ws.serverClose(1006);
  await tick(1000);
  const ws2 = await waitFor(() => FakeWebSocket.all[1]);
  ready(ws2);
  await waitFor(() => ws2.lastOf("sync"));
  const changed = [];
  client.on("message_changed", (e) => changed.push([e.message.seq, e.message.body]));
  const synced = [];
  client.on("synced", () => synced.push(1));
  // Only the newest two came: 6 and 7 are new; 1..5 may have been edited.
  syncReply(ws2, { position: "pos-2", conversations: [entry(convObj(CONV, 7), [msg(6), msg(7)], { more_messages: true })] });
  const h = await waitFor(() => ws2.lastOf("history"), "a re-read");
  assert.equal(h.before, 6);
  assert.equal(h.limit, 200);
  assert.equal(synced.length, 0);
  // 3 was edited, 4 deleted, 2 expired (absent).
  ws2.frame({ type: "history_result", id: h.id, conversation_id: CONV, messages: [
    msg(1), msg(3, { body: "edited", edited_at: "2026-11-27T10:00:00Z" }),
    msg(4, { body: "", deleted: true, edited_at: "2026-11-27T10:01:00Z" }), msg(5)] });
  await flush();
  assert.deepEqual(changed, [[3, "edited"], [4, ""]]);
  assert.deepEqual(seqs(client), [1, 3, 4, 5, 6, 7]);
  assert.equal(client.messages(CONV)[2].deleted, true);
  assert.equal(synced.length, 1);
  await client.close();
});

test("a live gap is backfilled", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 1), [msg(1)])] });
  ws.frame({ type: "message", message: msg(4) });
  const h = await waitFor(() => ws.lastOf("history"), "a backfill");
  assert.equal(h.after, 1);
  assert.deepEqual(seqs(client), [1], "4 waits for 2 and 3");
  ws.frame({ type: "history_result", id: h.id, conversation_id: CONV, messages: [msg(2), msg(3), msg(4)] });
  await flush();
  assert.deepEqual(seqs(client), [1, 2, 3, 4]);
  await client.close();
});

test("dedupe by (conversation, seq) and the merge rule", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const events = [];
  client.on("message", (e) => events.push(["message", e.message.seq, e.message.body]));
  client.on("message_changed", (e) => events.push(["changed", e.message.seq, e.message.body]));
  ws.frame({ type: "message", message: msg(1) });
  ws.frame({ type: "message", message: msg(1) }); // the same again: dropped
  ws.frame({ type: "message", message: msg(1, { body: "v2", edited_at: "2026-11-27T09:31:12.5Z" }) });
  ws.frame({ type: "message", message: msg(1, { body: "older", edited_at: "2026-11-27T09:31:12Z" }) }); // earlier edit: ignored
  ws.frame({ type: "message", message: msg(1, { body: "same time", edited_at: "2026-11-27T09:31:12.500Z" }) }); // tie: keep held
  ws.frame({ type: "message", message: msg(1, { body: "", deleted: true, edited_at: "2026-11-27T09:30:30Z" }) }); // tombstone wins
  ws.frame({ type: "message", message: msg(1, { body: "after", edited_at: "2026-11-27T11:00:00Z" }) }); // a tombstone is final
  await flush();
  assert.deepEqual(events, [["message", 1, "hello 1"], ["changed", 1, "v2"], ["changed", 1, ""]]);
  const [m] = client.messages(CONV);
  assert.equal(m.deleted, true);
  assert.equal(client.messages(CONV).length, 1);
  await client.close();
});

test("delivered is debounced during live traffic and sent once for the newest seq", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient({ options: { deliveredDelayMs: 500 } });
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const before = ws.ofType("delivered").length;
  ws.frame({ type: "message", message: msg(1) });
  await tick(100);
  ws.frame({ type: "message", message: msg(2) });
  await tick(100);
  ws.frame({ type: "message", message: msg(3) });
  await tick(200);
  assert.equal(ws.ofType("delivered").length, before, "nothing within the delay");
  await tick(100);
  const d = ws.ofType("delivered").slice(before);
  assert.equal(d.length, 1);
  assert.deepEqual([d[0].conversation_id, d[0].seq], [CONV, 3]);
  await tick(5000);
  assert.equal(ws.ofType("delivered").length, before + 1, "no repeats");
  await client.close();
});

test("unread counts: from sync, live messages of others, markRead", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 2), [msg(1), msg(2)], { unread_count: 2 })] });
  ws.frame({ type: "message", message: msg(3) });
  ws.frame({ type: "message", message: msg(4, { sender_id: USER }) });
  assert.equal(client.conversation(CONV).unreadCount, 3);
  await client.markRead(CONV);
  assert.equal(client.conversation(CONV).unreadCount, 0);
  const r = ws.lastOf("read");
  assert.deepEqual([r.conversation_id, r.seq], [CONV, 4]);
  await client.close();
});

test("conversation frames: created adds, member_removed of self removes", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client);
  const seen = [];
  client.on("conversation", (e) => seen.push(e.action));
  client.on("conversation_removed", (e) => seen.push("removed:" + e.conversationId));
  ws.frame({ type: "conversation", action: "created", conversation: convObj(CONV2, 0), user_ids: [USER, BOB], by_user_id: BOB });
  assert.equal(client.conversation(CONV2).members.length, 2);
  ws.frame({ type: "message", message: msg(1, { conversation_id: CONV2 }) });
  assert.deepEqual(seqs(client, CONV2), [1]);
  ws.frame({ type: "conversation", action: "member_removed", conversation: convObj(CONV2, 1, [{ user_id: BOB, role: "member", read_seq: 0, delivered_seq: 0, joined_at: "x" }]), user_ids: [USER], by_user_id: BOB });
  assert.deepEqual(seen, ["created", "removed:" + CONV2]);
  assert.equal(client.conversation(CONV2), undefined);
  await client.close();
});

test("loadOlder pages history before the oldest held message", async (t) => {
  useClock(t);
  const { client, server } = makeClient();
  const all = Array.from({ length: 6 }, (_, i) => msg(i + 1));
  server.routes["GET /v1/conversations/" + CONV + "/messages"] = (_, u) => {
    const before = Number(u.searchParams.get("before"));
    const limit = Number(u.searchParams.get("limit"));
    return [200, { messages: all.filter((m) => m.seq < before).slice(-limit) }];
  };
  await online(client, { conversations: [entry(convObj(CONV, 6), [msg(5), msg(6)])] });
  assert.equal(await client.loadOlder(CONV, 3), 3);
  assert.deepEqual(seqs(client), [2, 3, 4, 5, 6]);
  assert.equal(await client.loadOlder(CONV, 3), 1);
  assert.deepEqual(seqs(client), [1, 2, 3, 4, 5, 6]);
  const calls = server.callsTo("GET /v1/conversations/" + CONV + "/messages").length;
  assert.equal(await client.loadOlder(CONV), 0);
  assert.equal(server.callsTo("GET /v1/conversations/" + CONV + "/messages").length, calls, "nothing to ask before seq 1");
  await client.close();
});

test("conversations() are sorted by last activity, newest first", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [
    entry(convObj(CONV, 1), [msg(1, { created_at: "2026-11-27T09:00:00Z" })]),
    entry(convObj(CONV2, 1), [msg(1, { conversation_id: CONV2, created_at: "2026-11-27T10:00:00Z" })]),
  ] });
  assert.deepEqual(client.conversations().map((c) => c.id), [CONV2, CONV]);
  ws.frame({ type: "message", message: msg(2, { created_at: "2026-11-27T11:00:00Z" }) });
  assert.deepEqual(client.conversations().map((c) => c.id), [CONV, CONV2]);
  assert.equal(client.conversation(CONV).lastMessage.seq, 2);
  await client.close();
});

test("conversation_not_found on read or delivered drops the conversation; other delivered errors report again", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 1), [msg(1)]), entry(convObj(CONV2, 0))] });
  const d = ws.lastOf("delivered");
  assert.equal(d.id, "d:" + CONV);
  ws.frame({ type: "error", id: d.id, error: { code: "unavailable", message: "try later" } });
  await tick(1000);
  assert.equal(ws.ofType("delivered").length, 2, "reported again after a failure");
  await client.markRead(CONV2, 0);
  ws.frame({ type: "error", id: ws.lastOf("read").id, error: { code: "conversation_not_found", message: "conversation not found" } });
  assert.equal(client.conversation(CONV2), undefined);
  assert.ok(client.conversation(CONV));
  await client.close();
});

test("backfills: at most 8 history requests at once; a rate-limited one is retried and synced waits for it", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ids = Array.from({ length: 10 }, (_, i) => "01936f4e-8c2a-7b3d-9f10-0000000001" + String(i).padStart(2, "0"));
  const known = ids.map((id) => entry(convObj(id, 1), [msg(1, { conversation_id: id })]));
  const ws = await online(client, { conversations: known });
  ws.serverClose(1006);
  await tick(1000);
  const ws2 = await waitFor(() => FakeWebSocket.all[1]);
  ready(ws2);
  await waitFor(() => ws2.lastOf("sync"));
  const synced = [];
  client.on("synced", () => synced.push(1));
  syncReply(ws2, { position: "pos-2", conversations: ids.map((id) => entry(convObj(id, 5), [msg(5, { conversation_id: id })])) });
  await flush();
  const hs = ws2.ofType("history");
  assert.equal(hs.length, 8, "8 in flight, 2 waiting");
  const answer = (h) => ws2.frame({ type: "history_result", id: h.id, conversation_id: h.conversation_id,
    messages: [2, 3, 4].map((s) => msg(s, { conversation_id: h.conversation_id })) });
  ws2.frame({ type: "error", id: hs[0].id, error: { code: "rate_limited", message: "slow down", retry_after: 2 } });
  for (const h of hs.slice(1)) answer(h);
  await flush();
  const more = ws2.ofType("history").slice(8);
  assert.equal(more.length, 2, "the waiting two went out as others finished");
  for (const h of more) answer(h);
  await flush();
  assert.equal(synced.length, 0, "not synced while one backfill waits for its retry");
  await tick(2000);
  const retry = ws2.ofType("history")[10];
  assert.equal(retry && retry.conversation_id, hs[0].conversation_id);
  answer(retry);
  await flush();
  assert.equal(synced.length, 1);
  for (const id of ids) assert.deepEqual(client.messages(id).map((m) => m.seq), [1, 2, 3, 4, 5]);
  await client.close();
});

test("a read marked while offline is sent after the next sync", async (t) => {
  const tick = useClock(t);
  const { client, server } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 2), [msg(1), msg(2)], { unread_count: 2 })] });
  ws.serverClose(1006);
  server.routes[`POST /v1/conversations/${CONV}/read`] = () => {
    throw new TypeError("fetch failed");
  };
  await client.markRead(CONV);
  assert.equal(client.conversation(CONV).unreadCount, 0);
  assert.equal(server.callsTo(`POST /v1/conversations/${CONV}/read`).length, 1, "tried REST while offline");
  await tick(60_000);
  const ws2 = await waitFor(() => FakeWebSocket.last !== ws && FakeWebSocket.last, "a new socket");
  ready(ws2);
  await waitFor(() => ws2.lastOf("sync"), "a sync frame");
  assert.equal(ws2.lastOf("read"), undefined, "not before the sync");
  syncReply(ws2, { conversations: [entry(convObj(CONV, 2), [], { unread_count: 2 })] });
  await flush();
  const r = ws2.lastOf("read");
  assert.ok(r, "the read went after the sync");
  assert.deepEqual([r.conversation_id, r.seq], [CONV, 2]);
  await client.close();
});
