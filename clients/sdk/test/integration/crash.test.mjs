// Scenario 2 of issue 12: crashes. The server is SIGKILLed with sends in
// flight and restarted on the same port and data; and the client itself
// "crashes" (dropped without close) and a new instance restored from the
// same storage finishes its outbox. Nothing may be lost or doubled.
import test from "node:test";
import assert from "node:assert/strict";
import {
  server, client, account, record, waitFor, withTimeout, send, range, sleep,
  Rest, PASSWORD, cuttable, copyStorage, MemoryStorage,
} from "./helpers.mjs";

test("SIGKILL and restart of parleyd with 200 queued sends: each acked once, distinct seqs, no duplicate in history", async (t) => {
  const srv = await server(t);
  const bob = await Rest.user(srv.base, "bob");
  const net = cuttable(); // never cut here: it counts the send frames
  const alice = await account(t, srv.base, "alice", { backoff: { minMs: 50, maxMs: 500 }, WebSocket: net.WebSocket });
  const a = alice.client;
  const rec = record(a);
  await a.connect();
  const direct = await a.createDirect(bob.userId);
  const group = await a.createGroup("load", [bob.userId]);
  const convs = [direct.id, group.id];

  const N = 200;
  let ackedCount = 0;
  let ackedAtKill = -1;
  let killing = null;
  const sentTransitions = new Array(N).fill(0);
  const outs = [];
  for (let i = 0; i < N; i++) {
    const out = send(a, convs[i % 2], `message ${i}`);
    outs.push(out);
    let last = null;
    out.status.subscribe((s) => {
      if (s.state === "sent" && last === "sending") sentTransitions[i]++;
      last = s.state;
    });
    out.acked.then(() => {
      ackedCount++;
      if (ackedCount === 20 && !killing) {
        ackedAtKill = ackedCount;
        killing = srv.kill(); // SIGKILL now, with the rest in flight or queued
      }
    }, () => {});
  }
  assert.equal(new Set(outs.map((o) => o.clientMsgId)).size, N, "distinct clientMsgIds");
  await waitFor(() => ackedAtKill > 0, { timeout: 20000, what: "20 acks before the kill", detail: () => `acked ${ackedCount}` });
  await killing;
  const ackedAfterKill = ackedCount;
  assert.ok(ackedAfterKill < N, `the kill came with sends unacked (acked ${ackedAfterKill} of ${N})`);
  await waitFor(() => rec.of("disconnected").length > 0, { what: "the client to notice the dead server" });
  await sleep(300); // a reconnect attempt or two against a closed port
  await srv.start(); // same port, same data

  const acked = await withTimeout(Promise.all(outs.map((o) => o.acked)), 60000, "all 200 acks after the restart");
  assert.equal(ackedCount, N);
  assert.ok(ackedAtKill === 20);
  const frames = net.count("out", "send");
  t.diagnostic(`${ackedAfterKill} of ${N} acked when parleyd died; ${frames} send frames in all (${frames - N} resends)`);
  assert.ok(frames > N, "sends in flight at the kill were sent again");
  for (let i = 0; i < N; i++) {
    assert.equal(acked[i].clientMsgId, outs[i].clientMsgId, `ack ${i} is its send's`);
    assert.equal(acked[i].conversationId, convs[i % 2]);
    assert.equal(acked[i].body, `message ${i}`);
    assert.equal(sentTransitions[i], 1, `send ${i} went sending -> sent exactly once`);
  }
  for (const [k, conv] of convs.entries()) {
    const mine = acked.filter((m) => m.conversationId === conv).map((m) => m.seq);
    assert.deepEqual([...mine].sort((x, y) => x - y), range(1, N / 2), `conversation ${k}: distinct seqs 1..${N / 2}`);
    assert.deepEqual(mine, [...mine].sort((x, y) => x - y), `conversation ${k}: seqs follow the send order (the outbox is FIFO)`);
  }
  assert.equal(a.outbox().length, 0, "the outbox is empty");
  assert.ok(rec.of("connected").some((e) => e.reconnect === true), "the client reconnected by itself");

  // The server's history is the truth: exactly 200, no duplicate client_msg_id.
  const all = [];
  for (const conv of convs) {
    const h = await bob.history(conv);
    assert.deepEqual(h.map((m) => m.seq), range(1, N / 2));
    all.push(...h);
  }
  assert.equal(all.length, N);
  const ids = new Set(all.map((m) => m.client_msg_id));
  assert.equal(ids.size, N, "no client_msg_id twice in history");
  assert.deepEqual([...ids].sort(), outs.map((o) => o.clientMsgId).sort(), "history holds exactly the 200 sends");

  // What the client holds agrees: each seq once, none pending.
  for (const conv of convs) {
    await waitFor(() => a.messages(conv).length === N / 2 && a.messages(conv).every((m) => m.seq > 0), {
      what: "the client to hold 100 acked messages per conversation",
      detail: () => JSON.stringify(a.messages(conv).map((m) => m.seq)),
    });
    assert.deepEqual(a.messages(conv).map((m) => m.seq), range(1, N / 2));
  }
});

test("a client restored from the storage of a crashed one resends its outbox, nothing doubled", async (t) => {
  const srv = await server(t);
  const bob = await Rest.user(srv.base, "bob");
  const storage = new MemoryStorage();
  const net = cuttable();
  const a1 = client(t, srv.base, { storage, fetch: net.fetch, WebSocket: net.WebSocket });
  const alice = await Rest.register(srv.base, "alice");
  await a1.login(alice.handle, PASSWORD);
  await a1.connect();
  const direct = await a1.createDirect(bob.userId);

  const N = 60;
  const outs = [];
  const ackedIds = new Set();
  for (let i = 0; i < N; i++) {
    const out = send(a1, direct.id, `before the crash ${i}`);
    outs.push(out);
    out.acked.then(() => { ackedIds.add(out.clientMsgId); if (ackedIds.size === 10) net.cut(); }, () => {});
  }
  await waitFor(() => net.state.dead, { what: "10 acks before the crash", detail: () => `acked ${ackedIds.size}` });
  await sleep(200); // let what the first client had in hand settle, as a process does before it dies
  const unacked = outs.filter((o) => !ackedIds.has(o.clientMsgId)).map((o) => o.clientMsgId);
  assert.ok(unacked.length > 0, "the crash left sends unacked");
  const committed = (await bob.history(direct.id)).length;
  t.diagnostic(`${ackedIds.size} of ${N} acked at the crash, ${unacked.length} not; ${committed} committed (${committed - ackedIds.size} with their ack lost)`);
  const disk = await copyStorage(storage); // the disk at the crash; the first client is never used again

  const a2 = client(t, srv.base, { storage: disk });
  const rec2 = record(a2);
  assert.equal(await a2.restore(), true, "restore() finds the stored session");
  assert.equal(a2.session?.userId, alice.id, "the restored session is alice's");
  const restored = a2.outbox();
  const restoredIds = new Set(restored.map((o) => o.clientMsgId));
  for (const id of unacked) assert.ok(restoredIds.has(id), `unacked send ${id} is in the restored outbox`);
  for (const o of restored) assert.ok(outs.some((x) => x.clientMsgId === o.clientMsgId), "the restored outbox holds only our sends");
  for (const o of restored) o.acked.catch(() => {});
  await a2.connect();
  const reacked = await withTimeout(Promise.all(restored.map((o) => o.acked)), 30000, "the restored outbox's acks");
  for (const [i, m] of reacked.entries()) assert.equal(m.clientMsgId, restored[i].clientMsgId);
  await waitFor(() => a2.outbox().length === 0, { what: "the restored outbox to empty" });
  assert.equal(rec2.of("send_failed").length, 0, "no send failed");

  const h = await bob.history(direct.id);
  assert.equal(h.length, N, "history has exactly the 60 sends");
  assert.deepEqual(h.map((m) => m.seq), range(1, N));
  assert.equal(new Set(h.map((m) => m.client_msg_id)).size, N, "no client_msg_id twice");
  assert.deepEqual(h.map((m) => m.client_msg_id), outs.map((o) => o.clientMsgId), "history in send order, each send once");
  // The restored client's acks agree with history.
  const bySeq = new Map(h.map((m) => [m.client_msg_id, m.seq]));
  for (const m of reacked) assert.equal(m.seq, bySeq.get(m.clientMsgId));
});
