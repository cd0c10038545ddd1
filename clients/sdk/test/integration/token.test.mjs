// Scenario 4 of issue 12: access tokens that expire several times during
// one connection. parleyd runs with an 8 s access token (the minimum is
// 1 s, cmd/parleyd/config.go) and a 1 s ping interval, so the server
// closes an unrenewed connection with 4001 within a second of the expiry.
// The clients ping every 2.5 s, so they renew 5 s before an expiry (two
// ping intervals): a refresh and an auth frame on a loaded machine fit.
import test from "node:test";
import assert from "node:assert/strict";
import {
  server, account, record, waitFor, withTimeout, send, range, sleep, cuttable,
} from "./helpers.mjs";

const TTL_S = 8;
const ARGS = ["--access-token-ttl", `${TTL_S}s`, "--ping-interval", "1s", "--idle-timeout", "10s"];
const CLIENT = { pingIntervalMs: 2500 };

/** chatter sends from each [client, conversation] every everyMs until stop() and returns the outs. */
function chatter(pairs, everyMs) {
  const outs = [];
  let n = 0;
  const timer = setInterval(() => {
    for (const [name, c, conv] of pairs) outs.push({ from: name, conv, out: send(c, conv, `${name} ${n}`) });
    n++;
  }, everyMs);
  return { outs, stop: () => clearInterval(timer) };
}

async function pair(t, srv, aliceOpts = {}) {
  const alice = await account(t, srv.base, "alice", { ...CLIENT, ...aliceOpts });
  const bob = await account(t, srv.base, "bob", CLIENT);
  const recA = record(alice.client);
  const recB = record(bob.client);
  await Promise.all([alice.client.connect(), bob.client.connect()]);
  const direct = await alice.client.createDirect(bob.user.id);
  await waitFor(() => bob.client.conversation(direct.id), { what: "bob to learn the conversation" });
  return { alice, bob, recA, recB, direct };
}

/** checkAll asserts that both clients hold every acked message of conv once, in order, and got one event each. */
async function checkAll(clients, conv, acked) {
  const n = Math.max(...acked.map((m) => m.seq));
  assert.deepEqual(acked.map((m) => m.seq).sort((x, y) => x - y), range(1, n), "acked seqs are 1..n, no duplicates");
  for (const [name, c, rec] of clients) {
    await waitFor(() => c.messages(conv).filter((m) => m.seq > 0).length >= n, {
      what: `${name} to hold all ${n} messages`,
      detail: () => JSON.stringify(c.messages(conv).map((m) => m.seq)),
    });
    await sleep(200);
    assert.deepEqual(c.messages(conv).map((m) => m.seq), range(1, n), `${name}: held once each, in order`);
    assert.deepEqual(rec.messages(conv).map((m) => m.seq), range(1, n), `${name}: one message event per seq, in order`);
  }
}

test("tokens expiring every 8 s are renewed in band with auth: one connection, no 4001, messages keep flowing", async (t) => {
  const srv = await server(t, { args: ARGS });
  const netA = cuttable();
  const { alice, bob, recA, recB, direct } = await pair(t, srv, { fetch: netA.fetch, WebSocket: netA.WebSocket });
  const firstExpiry = new Date(alice.client.session.accessExpiresAt).getTime();
  const start = Date.now();
  const talk = chatter([["alice", alice.client, direct.id], ["bob", bob.client, direct.id]], 400);
  await sleep(TTL_S * 1000 * 3.5); // 3.5 lifetimes of a token
  talk.stop();
  const acked = await withTimeout(Promise.all(talk.outs.map((o) => o.out.acked)), 15000, "acks of the chatter");
  // setInterval drifts on a loaded machine: count what was sent (every
  // send was acked: Promise.all above rejects on any failure).
  assert.ok(talk.outs.length >= 20, `messages flowed (${talk.outs.length} sent and acked)`);
  await checkAll([["alice", alice.client, recA], ["bob", bob.client, recB]], direct.id, acked);

  for (const [name, rec] of [["alice", recA], ["bob", recB]]) {
    assert.deepEqual(rec.of("disconnected"), [], `${name}: never disconnected`);
    assert.equal(rec.of("connected").length, 1, `${name}: one connection all along`);
    assert.equal(rec.of("session_ended").length, 0);
    assert.ok(rec.of("token").length >= 3, `${name}: tokens refreshed at least 3 times (${rec.of("token").length})`);
  }
  // In band: alice's one socket carried auth frames, answered with authenticated, and never closed.
  assert.ok(netA.count("out", "auth") >= 3, `auth frames sent: ${netA.count("out", "auth")}`);
  assert.ok(netA.count("in", "authenticated") >= 3, `authenticated received: ${netA.count("in", "authenticated")}`);
  assert.deepEqual(netA.state.closes, [], "the socket never closed");
  const expiry = new Date(alice.client.session.accessExpiresAt).getTime();
  assert.ok(expiry > firstExpiry + 2 * TTL_S * 1000, `the session's expiry moved on (${expiry - start} ms after the start)`);
});

test("renewal impossible for a while: 4001, then refresh and reconnect, nothing lost", async (t) => {
  const srv = await server(t, { args: ARGS });
  let blockRefresh = false;
  let refreshAttemptsBlocked = 0;
  const netA = cuttable({
    failFetch: (url) => {
      if (blockRefresh && url.includes("/v1/sessions/refresh")) { refreshAttemptsBlocked++; return true; }
      return false;
    },
  });
  const { alice, bob, recA, recB, direct } = await pair(t, srv, { fetch: netA.fetch, WebSocket: netA.WebSocket });
  const talk = chatter([["bob", bob.client, direct.id]], 300);
  const talkA = chatter([["alice", alice.client, direct.id]], 700);
  await sleep(1000);
  blockRefresh = true;
  const blockedAt = Date.now();
  await waitFor(() => recA.of("disconnected", blockedAt).some((e) => e.code === 4001), {
    timeout: (TTL_S + 4) * 1000,
    what: "the server to close alice's connection with 4001 once her token expired unrenewed",
    detail: () => JSON.stringify({ disconnected: recA.of("disconnected"), closes: netA.state.closes, status: alice.client.status }),
  });
  await sleep(1500); // still blocked: refreshes fail, the client keeps trying
  assert.ok(refreshAttemptsBlocked >= 1, "alice tried to refresh while blocked");
  assert.notEqual(alice.client.status, "online");
  assert.notEqual(alice.client.status, "stopped", "a failed refresh (network) does not stop the client");
  assert.equal(recA.of("session_ended").length, 0, "a failed refresh (network) does not end the session");
  const unblockedAt = Date.now();
  blockRefresh = false;
  await waitFor(() => recA.of("connected", unblockedAt).length > 0 && alice.client.status === "online", {
    timeout: 10000,
    what: "alice to refresh and reconnect after the block",
    detail: () => JSON.stringify({ status: alice.client.status, events: recA.all.slice(-10).map((r) => r.type) }),
  });
  assert.ok(recA.of("connected", unblockedAt).every((e) => e.reconnect === true));
  await sleep(1500);
  talk.stop();
  talkA.stop();
  const acked = await withTimeout(Promise.all([...talk.outs, ...talkA.outs].map((o) => o.out.acked)), 20000, "acks of the chatter");
  await checkAll([["alice", alice.client, recA], ["bob", bob.client, recB]], direct.id, acked);
  assert.equal(alice.client.outbox().length, 0);
  assert.equal(recA.of("session_ended").length, 0);
  assert.equal(recB.of("disconnected").length, 0, "bob, who could refresh, stayed connected");
});
