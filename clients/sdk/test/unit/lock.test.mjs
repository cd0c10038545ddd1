// Two instances on one storage (two browser tabs on one IndexedDB) refresh
// under a shared lock: the second adopts the tokens the first rotated
// instead of presenting the used refresh token (which ends the session).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../dist/esm/index.js";
import { makeClient, useClock, FakeServer, USER } from "./fakes.mjs";

/** A mutex like navigator.locks.request: one holder at a time, in order. */
function sharedLock() {
  let tail = Promise.resolve();
  const lock = (name, fn) => {
    const run = tail.then(() => fn());
    tail = run.catch(() => {});
    return run;
  };
  return lock;
}

/** A server that, like parleyd, revokes the session when a used refresh token comes back. */
function rotatingServer() {
  const server = new FakeServer();
  const used = new Set();
  server.revoked = false;
  server.routes["POST /v1/sessions/refresh"] = (body) => {
    if (server.revoked || used.has(body.refresh_token)) {
      server.revoked = true;
      return [401, { error: { code: "unauthorized", message: "refresh token reused" } }];
    }
    used.add(body.refresh_token);
    server.refreshes++;
    return [200, server.session()];
  };
  server.routes["GET /v1/me"] = () => [200, { user: { id: USER, handle: "alice" } }];
  return server;
}

async function twoTabs(t, options) {
  const tick = useClock(t);
  const storage = new MemoryStorage();
  const server = rotatingServer();
  const a = makeClient({ storage, server, options }).client;
  await a.login("alice", "correct horse battery");
  const b = makeClient({ storage, server, options }).client;
  assert.equal(await b.restore(), true);
  await tick(900_000 - 60_000 + 1); // both within a minute of the expiry
  return { a, b, server, storage, tick };
}

test("with a shared lock, two instances on one storage refresh once and both use the new tokens", async (t) => {
  const { a, b, server, storage } = await twoTabs(t, { lock: sharedLock() });
  const ended = [];
  a.on("session_ended", () => ended.push("a"));
  b.on("session_ended", () => ended.push("b"));
  await Promise.all([a.me(), b.me()]);
  assert.equal(server.refreshes, 1, "one refresh request");
  assert.equal(server.callsTo("POST /v1/sessions/refresh").length, 1);
  assert.equal(server.revoked, false);
  assert.deepEqual(ended, []);
  assert.deepEqual(server.callsTo("GET /v1/me").map((c) => c.auth), ["Bearer at-1", "Bearer at-1"]);
  assert.equal((await storage.get("tokens")).refreshToken, "rt-1");
  assert.equal(a.session.accessExpiresAt, b.session.accessExpiresAt);
});

test("an instance adopts tokens another one rotated earlier, even without overlap", async (t) => {
  const { a, b, server } = await twoTabs(t, { lock: sharedLock() });
  await a.me();
  await b.me();
  assert.equal(server.refreshes, 1);
  assert.equal(server.revoked, false);
  assert.equal(b.session.accessExpiresAt, a.session.accessExpiresAt);
});

test("without the lock, concurrent refreshes present a used token (why the option exists)", async (t) => {
  const { a, b, server } = await twoTabs(t, {});
  const r = await Promise.allSettled([a.me(), b.me()]);
  assert.equal(server.callsTo("POST /v1/sessions/refresh").length, 2);
  assert.equal(server.revoked, true);
  assert.ok(r.some((x) => x.status === "rejected"));
});
