// Scenario 5 of issue 12: a frozen socket. parleyd is stopped with SIGSTOP,
// so every socket stays open and nothing closes; the SDK must find out by
// its own ping timeout, then reconnect after SIGCONT, sync, and a message
// another client sent meanwhile (waiting in its outbox) arrives once.
import test from "node:test";
import assert from "node:assert/strict";
import {
  server, account, record, waitFor, withTimeout, send, sleep, Rest,
} from "./helpers.mjs";

const PING_INTERVAL_MS = 1000;
const PING_TIMEOUT_MS = 2000;
const SLACK_MS = 4000; // two Node timers late on a loaded 2-core machine (CI runs at load 12-20)

test("a server frozen by SIGSTOP is detected by the ping timeout; after SIGCONT the client reconnects, syncs, and a message queued meanwhile arrives once", async (t) => {
  const srv = await server(t);
  const opts = { pingIntervalMs: PING_INTERVAL_MS, pingTimeoutMs: PING_TIMEOUT_MS };
  const alice = await account(t, srv.base, "alice", opts);
  const bob = await account(t, srv.base, "bob", opts);
  const a = alice.client;
  const b = bob.client;
  const recA = record(a);
  const recB = record(b);
  await Promise.all([a.connect(), b.connect()]);
  const direct = await a.createDirect(bob.user.id);
  await waitFor(() => b.conversation(direct.id), { what: "bob to learn the conversation" });
  const warm = await send(b, direct.id, "before the freeze").acked;
  await waitFor(() => a.messages(direct.id).some((m) => m.seq === warm.seq), { what: "alice to get the first message" });
  assert.equal(a.status, "online");

  const pid = srv.pid;
  assert.ok(pid > 0, "the harness exposes the server's pid");
  const frozenAt = Date.now();
  process.kill(pid, "SIGSTOP");
  let thawed = false;
  t.after(() => { if (!thawed) try { process.kill(pid, "SIGCONT"); } catch { /* gone */ } });

  const limit = PING_TIMEOUT_MS + PING_INTERVAL_MS + SLACK_MS;
  await waitFor(() => recA.of("disconnected", frozenAt).length > 0, {
    timeout: limit + 2000,
    what: "alice's SDK to report the frozen socket disconnected",
    detail: () => JSON.stringify({ status: a.status, events: recA.all.slice(-5).map((r) => r.type) }),
  });
  const detectedAfter = recA.all.find((r) => r.type === "disconnected" && r.at >= frozenAt).at - frozenAt;
  t.diagnostic(`frozen socket detected after ${detectedAfter} ms`);
  assert.ok(detectedAfter <= limit, `detected within pingTimeoutMs + ping interval (+${SLACK_MS} ms slack): ${detectedAfter} ms`);
  const cause = recA.all.find((r) => r.type === "disconnected" && r.at >= frozenAt).e;
  assert.match(String(cause?.error?.message ?? cause?.reason ?? JSON.stringify(cause)), /pong timeout/, "the ping timeout found it");
  assert.notEqual(a.status, "online");
  assert.notEqual(a.status, "stopped");

  // bob's client finds out too; he sends meanwhile: it waits in his outbox.
  await waitFor(() => recB.of("disconnected", frozenAt).length > 0, { timeout: limit + 2000, what: "bob's SDK to see the freeze" });
  const late = send(b, direct.id, "sent while the server was frozen");
  assert.ok(b.outbox().some((o) => o.clientMsgId === late.clientMsgId), "the send waits in bob's outbox");
  assert.equal(late.status.get().state, "sending");
  await sleep(1000); // reconnect attempts against the frozen server

  const thawedAt = Date.now();
  process.kill(pid, "SIGCONT");
  thawed = true;
  const m = await withTimeout(late.acked, 20000, "bob's queued message to be acked after SIGCONT");
  await waitFor(() => recA.of("connected", thawedAt).some((e) => e.reconnect === true) && recA.of("synced", thawedAt).length > 0, {
    timeout: 20000,
    what: "alice to reconnect and sync after SIGCONT",
    detail: () => JSON.stringify({ status: a.status, events: recA.all.slice(-8).map((r) => r.type) }),
  });
  await waitFor(() => a.messages(direct.id).some((x) => x.clientMsgId === late.clientMsgId), {
    timeout: 10000,
    what: "alice to get bob's queued message",
  });
  await sleep(1000); // a duplicate would come now
  const held = a.messages(direct.id).filter((x) => x.clientMsgId === late.clientMsgId);
  assert.equal(held.length, 1, "held once");
  assert.equal(held[0].seq, m.seq);
  const events = recA.messages(direct.id).filter((x) => x.clientMsgId === late.clientMsgId);
  assert.equal(events.length, 1, "one message event for it");
  assert.deepEqual(a.messages(direct.id).map((x) => x.seq), [warm.seq, m.seq], "alice holds the two messages in order");
  assert.equal(b.outbox().length, 0);

  // The server stored it once (bob's frame from the frozen socket and his resend are one message).
  const viewer = await Rest.login(srv.base, alice.handle);
  const h = await viewer.history(direct.id);
  assert.equal(h.filter((x) => x.client_msg_id === late.clientMsgId).length, 1, "stored once");
  assert.equal(h.length, 2);
});
