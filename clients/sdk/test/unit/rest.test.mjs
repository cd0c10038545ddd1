// REST: login with the device token, refresh before expiry (one at a time,
// stored at once), typed errors, push registration bodies, logout.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage, ParleyError } from "../../dist/esm/index.js";
import { makeClient, useClock, flush, USER, DEVICE } from "./fakes.mjs";

test("login stores the tokens and the device token; the next login sends it", async () => {
  const storage = new MemoryStorage();
  const { client, server } = makeClient({ storage, options: { platform: "ios", deviceName: "Alice's phone" } });
  const s = await client.login("alice", "correct horse battery");
  assert.deepEqual([s.userId, s.deviceId], [USER, DEVICE]);
  assert.equal(server.calls[0].body.device_token, undefined);
  assert.deepEqual(server.calls[0].body.device, { platform: "ios", name: "Alice's phone" });
  assert.equal((await storage.get("tokens")).refreshToken, "rt-0");
  assert.equal(await storage.get("device_token"), "dt-1");
  await client.logout();
  assert.equal(server.callsTo("DELETE /v1/sessions/current").length, 1);
  assert.equal(await storage.get("tokens"), undefined);
  assert.equal(await storage.get("device_token"), "dt-1", "kept after logout");
  assert.equal(client.session, null);
  await client.login("alice", "correct horse battery");
  assert.equal(server.callsTo("POST /v1/sessions")[1].body.device_token, "dt-1");
});

test("a token about to expire is refreshed once before REST calls, and the rotation is stored", async (t) => {
  const tick = useClock(t);
  const storage = new MemoryStorage();
  const { client, server } = makeClient({ storage });
  server.routes["GET /v1/me"] = () => [200, { user: { id: USER, handle: "alice", display_name: "Alice" } }];
  await client.login("alice", "correct horse battery");
  await client.me();
  assert.equal(server.refreshes, 0);
  await tick(900_000 - 60_000 + 1); // within a minute of the expiry
  const [a, b] = await Promise.all([client.me(), client.me()]);
  assert.equal(a.displayName, "Alice");
  assert.equal(server.refreshes, 1, "one refresh for two calls");
  assert.deepEqual(server.callsTo("GET /v1/me").map((c) => c.auth), ["Bearer at-0", "Bearer at-1", "Bearer at-1"]);
  assert.equal((await storage.get("tokens")).refreshToken, "rt-1");
  assert.equal(server.callsTo("POST /v1/sessions/refresh")[0].body.refresh_token, "rt-0");
});

test("token_expired on a call refreshes and retries once", async () => {
  const { client, server } = makeClient();
  let n = 0;
  server.routes["GET /v1/me"] = () => (n++ === 0 ? [401, { error: { code: "token_expired", message: "expired" } }] : [200, { user: { id: USER } }]);
  await client.login("alice", "correct horse battery");
  assert.equal((await client.me()).id, USER);
  assert.equal(server.refreshes, 1);
});

test("errors are ParleyError with the server's code, status and retry hint", async () => {
  const { client, server } = makeClient();
  server.routes["GET /v1/users"] = () => [404, { error: { code: "not_found", message: "no such user" } }, { "X-Request-ID": "req-9" }];
  await client.login("alice", "correct horse battery");
  await assert.rejects(client.findUser("nobody"), (e) => e instanceof ParleyError && e.code === "not_found" && e.status === 404 && e.requestId === "req-9");
  assert.match(server.callsTo("GET /v1/users")[0].url, /\?handle=nobody$/);
  server.routes["POST /v1/accounts"] = () => [409, { error: { code: "conflict", message: "handle taken" } }];
  await assert.rejects(client.register("alice", "correct horse battery"), (e) => e.code === "conflict");
  await assert.rejects(makeClient({ options: { fetch: async () => { throw new TypeError("fetch failed"); } } }).client.register("a", "b"), (e) => e.code === "network");
});

test("registerPush sends the body of openapi's PushRegistrationRequest", async () => {
  const { client, server } = makeClient();
  const bodies = [];
  server.routes["PUT /v1/devices/current/push"] = (b) => (bodies.push(b), [200, { push: b }]);
  server.routes["DELETE /v1/devices/current/push"] = () => [204, undefined];
  await client.login("alice", "correct horse battery");
  const sub = { endpoint: "https://push.example/abc", expirationTime: null, keys: { p256dh: "BN", auth: "tB" } };
  await client.registerPush({ kind: "webpush", subscription: sub });
  await client.registerPush({ kind: "fcm", token: "fcm-token" });
  await client.registerPush({ kind: "apns", token: "ab".repeat(32), topic: "com.example.app", sandbox: true });
  await client.unregisterPush();
  assert.deepEqual(bodies, [
    { provider: "webpush", subscription: sub },
    { provider: "fcm", token: "fcm-token" },
    { provider: "apns", token: "ab".repeat(32), topic: "com.example.app", environment: "sandbox" },
  ]);
  assert.equal(server.callsTo("DELETE /v1/devices/current/push").length, 1);
});

test("history and conversations map to camelCase", async () => {
  const { client, server } = makeClient();
  server.routes["GET /v1/conversations/c1/messages"] = (_, u) => [200, { messages: [{ seq: 3, conversation_id: "c1", sender_id: "u", client_msg_id: "x", created_at: "t" }], truncated: true, q: u.search }];
  server.routes["POST /v1/conversations"] = (b) => [201, { conversation: { id: "c9", kind: b.kind, title: b.title || "", last_seq: 0, created_at: "2026-11-27T09:00:00Z", members: [{ user_id: USER, role: "owner", read_seq: 0, delivered_seq: 0, joined_at: "t" }] } }];
  await client.login("alice", "correct horse battery");
  const h = await client.history("c1", { before: 10, limit: 5 });
  assert.match(server.callsTo("GET /v1/conversations/c1/messages")[0].url, /\?before=10&limit=5$/);
  assert.deepEqual(h, { messages: [{ seq: 3, conversationId: "c1", senderId: "u", clientMsgId: "x", createdAt: "t" }], truncated: true });
  const g = await client.createGroup("climbing", ["u2"]);
  assert.deepEqual(server.callsTo("POST /v1/conversations")[0].body, { kind: "group", title: "climbing", members: ["u2"] });
  assert.equal(g.members[0].role, "owner");
  assert.equal(client.conversation("c9").title, "climbing");
});
