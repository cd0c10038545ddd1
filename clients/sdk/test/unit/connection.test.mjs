// Connection lifecycle: tickets, backoff with full jitter, close codes,
// liveness pings, in-band token renewal, app state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeWebSocket, FakeServer, makeClient, online, ready, useClock, waitFor, flush } from "./fakes.mjs";

test("every attempt uses a new ticket in the URL, never the access token", async (t) => {
  const tick = useClock(t);
  const { client, server } = makeClient();
  const ws = await online(client);
  assert.match(ws.url, /^ws:\/\/parley\.test\/v1\/ws\?ticket=wst_1$/);
  ws.serverClose(1006);
  await tick(600);
  const ws2 = await waitFor(() => FakeWebSocket.all[1], "a second socket");
  assert.match(ws2.url, /\?ticket=wst_2$/);
  assert.equal(server.callsTo("POST /v1/ws/ticket").length, 2);
  assert.equal(server.callsTo("POST /v1/ws/ticket")[0].auth, "Bearer at-0");
  await client.close();
});

/** socketsAfter fails n connection attempts (close 1006 before ready) and returns the delays between them. */
async function measureDelays(t, random, n, backoff) {
  const tick = useClock(t);
  const { client } = makeClient({ options: { random: () => random, backoff } });
  await client.login("alice", "correct horse battery");
  client.connect().catch(() => {});
  const delays = [];
  for (let i = 0; i < n; i++) {
    const ws = await waitFor(() => FakeWebSocket.all[i], "socket " + i);
    ws.serverClose(1006);
    await flush();
    // Step in 10 ms until the next socket exists.
    let waited = 0;
    while (FakeWebSocket.all.length === i + 1) {
      await tick(10);
      waited += 10;
      if (waited > 120000) throw new Error("no reconnect");
    }
    delays.push(waited);
  }
  await client.close();
  return delays;
}

test("backoff is exponential, capped, with full jitter", async (t) => {
  // random() = 0.999: each delay is (just under) the ceiling min(max, min * 2^attempt).
  const high = await measureDelays(t, 0.999, 6, { minMs: 500, maxMs: 8000 });
  assert.deepEqual(high, [500, 1000, 2000, 4000, 8000, 8000]);
  // random() = 0.25: a quarter of the ceiling: the jitter is random * ceiling, from 0.
  const low = await measureDelays(t, 0.25, 4, { minMs: 500, maxMs: 8000 });
  assert.deepEqual(low, [130, 250, 500, 1000]);
  const zero = await measureDelays(t, 0, 3, { minMs: 500, maxMs: 8000 });
  assert.deepEqual(zero, [10, 10, 10]);
});

test("a connection up for a minute resets the backoff", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient({ options: { random: () => 0.999, backoff: { minMs: 1000, maxMs: 60000 } } });
  const ws = await online(client);
  ws.serverClose(1006); // attempt 0: up to 1 s
  await tick(1000);
  const ws2 = await waitFor(() => FakeWebSocket.all[1]);
  ws2.serverClose(1006); // never ready: attempt 1: up to 2 s
  await tick(1000);
  assert.equal(FakeWebSocket.all.length, 2, "the second retry waits longer");
  await tick(1000);
  const ws3 = await waitFor(() => FakeWebSocket.all[2]);
  ready(ws3);
  await tick(61000);
  ws3.serverClose(1006);
  await tick(1000);
  await waitFor(() => FakeWebSocket.all[3], "a reconnect after 1 s: the attempt count was reset");
  await client.close();
});

test("close 1001 reconnects after random(0, 5 s), whatever the backoff", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient({ options: { random: () => 0.5, backoff: { minMs: 100, maxMs: 100 } } });
  const ws = await online(client);
  ws.serverClose(1001);
  await tick(2490);
  assert.equal(FakeWebSocket.all.length, 1);
  await tick(20);
  await waitFor(() => FakeWebSocket.all[1], "a reconnect at 2.5 s");
  await client.close();
});

test("close 4001 refreshes and reconnects at once", async (t) => {
  useClock(t);
  const { client, server } = makeClient({ options: { random: () => 0.999, backoff: { minMs: 30000, maxMs: 30000 } } });
  const ws = await online(client);
  ws.serverClose(4001);
  const ws2 = await waitFor(() => FakeWebSocket.all[1], "an immediate reconnect");
  assert.equal(server.refreshes, 1);
  assert.match(ws2.url, /ticket=wst_2/);
  assert.equal(server.callsTo("POST /v1/ws/ticket")[1].auth, "Bearer at-1", "the ticket was asked with the new token");
  await client.close();
});

test("close 4003 ends the session: session_ended, stopped, no reconnect", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ended = [];
  client.on("session_ended", (e) => ended.push(e.error.code));
  const ws = await online(client);
  ws.serverClose(4003);
  await tick(120000);
  assert.deepEqual(ended, ["unauthorized"]);
  assert.equal(client.status, "stopped");
  assert.equal(client.session, null);
  assert.equal(FakeWebSocket.all.length, 1);
});

test("close 4004 stops until connect() is called again", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client);
  ws.serverClose(4004);
  await tick(120000);
  assert.equal(client.status, "stopped");
  assert.equal(FakeWebSocket.all.length, 1);
  assert.ok(client.session, "the session is still there");
  client.connect().catch(() => {});
  await waitFor(() => FakeWebSocket.all[1], "a socket after connect()");
  await client.close();
});

test("unauthorized on refresh ends the session", async (t) => {
  useClock(t);
  const { client, server } = makeClient();
  const ended = [];
  client.on("session_ended", (e) => ended.push(e.error.code));
  const ws = await online(client);
  server.routes["POST /v1/sessions/refresh"] = () => [401, { error: { code: "unauthorized", message: "refresh token reused" } }];
  ws.serverClose(4001);
  await waitFor(() => ended.length, "session_ended");
  assert.equal(client.status, "stopped");
  assert.equal(FakeWebSocket.all.length, 1);
});

test("a frozen socket: the missing pong closes it and the client reconnects", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient({ options: { pingTimeoutMs: 10000, random: () => 0 } });
  const ws = await online(client);
  const disconnected = [];
  client.on("disconnected", (e) => disconnected.push(e.error && e.error.code));
  await tick(25000);
  const ping = ws.lastOf("ping");
  assert.ok(ping, "a ping every ping_interval");
  ws.frame({ type: "pong", id: ping.id }); // answered: alive
  await tick(24999);
  assert.equal(ws.ofType("ping").length, 1);
  await tick(1);
  assert.equal(ws.ofType("ping").length, 2);
  await tick(9999); // no pong for the second ping
  assert.equal(disconnected.length, 0);
  assert.equal(FakeWebSocket.all.length, 1);
  await tick(1);
  assert.deepEqual(disconnected, ["timeout"]);
  assert.equal(ws.closedWith, 1000, "the SDK closed the dead socket itself");
  await tick(10);
  await waitFor(() => FakeWebSocket.all[1], "a reconnect without waiting for the dead socket's close");
  await client.close();
});

test("the token is renewed in band at 80% of its lifetime", async (t) => {
  const tick = useClock(t);
  const { client, server } = makeClient();
  server.ttl = 100; // the socket's token is the one the client holds
  await client.login("alice", "correct horse battery");
  const connected = client.connect();
  const ws = await waitFor(() => FakeWebSocket.last);
  // 100 s left, ping interval 5 s: renew at 80 s (earlier than expiry - 2 pings).
  ready(ws, { ping_interval: 5, token_expires_at: new Date(Date.now() + 100_000).toISOString() });
  await connected;
  ws.frame({ type: "sync_result", id: ws.lastOf("sync").id, position: "p", has_more: false, conversations: [] });
  ws.onSend = (f) => f.type === "ping" && ws.frame({ type: "pong", id: f.id });
  await tick(79_900);
  assert.equal(server.refreshes, 0);
  assert.equal(ws.ofType("auth").length, 0);
  await tick(100);
  const auth = await waitFor(() => ws.lastOf("auth"), "an auth frame");
  assert.equal(server.refreshes, 1);
  assert.equal(auth.access_token, "at-1");
  ws.frame({ type: "authenticated", id: auth.id, token_expires_at: new Date(Date.now() + 100_000).toISOString() });
  await tick(79_000);
  assert.equal(ws.ofType("auth").length, 1);
  await tick(1_000);
  await waitFor(() => ws.ofType("auth").length === 2, "the next renewal at 80% again");
  assert.equal(FakeWebSocket.all.length, 1, "never reconnected");
  await client.close();
});

test("setAppState: background stops pinging, active pings at once and syncs", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client);
  client.setAppState("background");
  await tick(100000);
  assert.equal(ws.ofType("ping").length, 0);
  const syncs = ws.ofType("sync").length;
  client.setAppState("active");
  assert.equal(ws.ofType("ping").length, 1);
  assert.equal(ws.ofType("sync").length, syncs + 1);
  assert.equal(ws.lastOf("sync").position, "pos-1");
  await client.close();
});

test("setOnline(true) skips the backoff wait", async (t) => {
  useClock(t);
  const { client } = makeClient({ options: { random: () => 0.999, backoff: { minMs: 30000, maxMs: 30000 } } });
  const ws = await online(client);
  ws.serverClose(1006);
  await flush();
  assert.equal(FakeWebSocket.all.length, 1);
  client.setOnline(true);
  await waitFor(() => FakeWebSocket.all[1], "an immediate reconnect");
  await client.close();
});

test("close() sends 1000 and stops", async (t) => {
  const tick = useClock(t);
  const { client } = makeClient();
  const ws = await online(client);
  await client.close();
  assert.equal(ws.closedWith, 1000);
  assert.equal(client.status, "stopped");
  await tick(120000);
  assert.equal(FakeWebSocket.all.length, 1);
});

test("a hung ticket fetch times out (ParleyError timeout) and the reconnect tries again instead of staying connecting", async (t) => {
  const tick = useClock(t);
  const server = new FakeServer();
  const answer = server.fetch;
  let hang = false;
  let asked = 0;
  server.fetch = (url, init) => {
    if (url.endsWith("/v1/ws/ticket")) asked++;
    return hang && url.endsWith("/v1/ws/ticket") ? new Promise(() => {}) : answer(url, init);
  };
  const { client } = makeClient({ server, options: { requestTimeoutMs: 1000 } });
  await client.login("alice", "correct horse battery");
  hang = true;
  const statuses = [];
  client.on("status", (e) => statuses.push(e.status));
  client.connect().catch(() => {});
  await flush();
  const tickets = () => asked;
  assert.equal(tickets(), 1);
  for (let i = 0; i < 10 && tickets() < 2; i++) await tick(1000);
  assert.ok(tickets() >= 2, "asked for a ticket again after the hung one timed out");
  hang = false;
  for (let i = 0; i < 40 && !FakeWebSocket.last; i++) await tick(1000);
  assert.ok(FakeWebSocket.last, "connected once the server answers");
  await client.close();
});

test("a clock ahead of the server's renews at most once per ping interval and refreshes when auth gains nothing", async (t) => {
  const tick = useClock(t);
  const { client, server } = makeClient({ options: { now: () => Date.now() + 3_600_000 } });
  await client.login("alice", "correct horse battery");
  const connected = client.connect();
  const ws = await waitFor(() => FakeWebSocket.last, "a socket");
  const exp = new Date(Date.now() + 900_000).toISOString();
  ready(ws, { token_expires_at: exp });
  await connected;
  let answered = 0;
  for (let i = 0; i < 100; i++) {
    await tick(1000);
    const auths = ws.ofType("auth");
    for (; answered < auths.length; answered++) ws.frame({ type: "authenticated", id: auths[answered].id, token_expires_at: exp });
  }
  const n = ws.ofType("auth").length;
  assert.ok(n >= 1 && n <= 5, `auth frames in 100 s with a 25 s ping interval: ${n}`);
  assert.ok(server.refreshes >= 1, "refreshed when the held token did not extend the expiry");
  await client.close();
});
