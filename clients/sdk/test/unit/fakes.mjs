// Fakes for the unit tests: a WebSocket the test drives frame by frame, a
// fetch that answers the REST calls the SDK makes, and helpers to bring a
// client to "online" through the real protocol steps (ticket, ready, sync).
import { mock } from "node:test";
import { ParleyClient, MemoryStorage } from "../../dist/esm/index.js";

export const USER = "01936f4e-7b19-7a2c-8e0f-1b3c4d5e6f70";
export const DEVICE = "01936f4e-7c20-7d31-9a44-5e6f708192a3";
export const BOB = "01936f4e-7e55-7f00-8b12-6f708192a3b4";
export const CAROL = "01936f4e-7e55-7f00-8b12-00000000000c";
export const DAVE = "01936f4e-7e55-7f00-8b12-00000000000d";
export const CONV = "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b";
export const CONV2 = "01936f4e-8c2a-7b3d-9f10-000000000002";

/** FakeWebSocket records what the client sends; the test plays the server. */
export class FakeWebSocket {
  static all = [];
  static get last() {
    return FakeWebSocket.all[FakeWebSocket.all.length - 1];
  }
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = undefined;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.onSend = null;
    FakeWebSocket.all.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("not open");
    const f = JSON.parse(data);
    this.sent.push(f);
    if (this.onSend) this.onSend(f);
  }
  /** The client's close: recorded; a frozen socket never reports it back. */
  close(code) {
    this.closedWith = code ?? 1005;
    this.readyState = 2;
  }
  // --- the server's side
  open() {
    this.readyState = 1;
    this.onopen && this.onopen({});
  }
  frame(f) {
    this.onmessage && this.onmessage({ data: JSON.stringify(f) });
  }
  serverClose(code) {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason: "" });
  }
  ofType(type) {
    return this.sent.filter((f) => f.type === type);
  }
  lastOf(type) {
    const a = this.ofType(type);
    return a[a.length - 1];
  }
}

/** FakeServer answers the SDK's REST calls; handlers may be replaced per test. */
export class FakeServer {
  constructor() {
    this.calls = [];
    this.refreshes = 0;
    this.tickets = 0;
    this.ttl = 900;
    this.routes = {
      "POST /v1/sessions": () => [200, this.session({ device_token: "dt-1" })],
      "POST /v1/sessions/refresh": (body) => {
        this.refreshes++;
        return [200, this.session({ refreshed: body.refresh_token })];
      },
      "POST /v1/ws/ticket": () => [200, { ticket: "wst_" + ++this.tickets, expires_in: 30 }],
      "DELETE /v1/sessions/current": () => [204, undefined],
    };
    this.fetch = async (url, init) => {
      const u = new URL(url);
      const key = init.method + " " + u.pathname;
      const body = init.body ? JSON.parse(init.body) : undefined;
      this.calls.push({ key, url, body, auth: init.headers.Authorization });
      const h = this.routes[key];
      const [status, out, headers = {}] = h ? h(body, u) : [404, { error: { code: "not_found", message: "no route" } }];
      return {
        status,
        headers: { get: (n) => headers[n] ?? headers[n.toLowerCase()] ?? null },
        text: async () => (out === undefined ? "" : JSON.stringify(out)),
      };
    };
  }
  session(extra = {}) {
    const n = this.refreshes;
    return { access_token: "at-" + n, refresh_token: "rt-" + n, expires_in: this.ttl, user_id: USER, device_id: DEVICE, ...extra };
  }
  callsTo(key) {
    return this.calls.filter((c) => c.key === key);
  }
}

/** flush lets pending promises and storage writes run (setImmediate is never mocked). */
export async function flush(n = 10) {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

/** useClock mocks setTimeout and Date from t = 1,000,000 ms; tick(ms) advances and flushes. */
export function useClock(t) {
  mock.timers.reset();
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  t.after(() => mock.timers.reset());
  return async (ms) => {
    await flush();
    mock.timers.tick(ms);
    await flush();
  };
}

export function makeClient(opts = {}) {
  const server = opts.server || new FakeServer();
  FakeWebSocket.all = [];
  const client = new ParleyClient({
    server: "http://parley.test",
    storage: opts.storage || new MemoryStorage(),
    WebSocket: FakeWebSocket,
    fetch: server.fetch,
    ...opts.options,
  });
  return { client, server };
}

export function ready(ws, extra = {}) {
  ws.open();
  ws.frame({
    type: "ready",
    user_id: USER,
    device_id: DEVICE,
    ping_interval: 25,
    token_expires_at: new Date(Date.now() + 900_000).toISOString(),
    max_frame_bytes: 131072,
    ...extra,
  });
}

/** waitFor polls cond (flushing between tries) and fails after many tries. */
export async function waitFor(cond, what = "condition") {
  for (let i = 0; i < 200; i++) {
    const v = cond();
    if (v) return v;
    await flush(1);
  }
  throw new Error("timed out waiting for " + what);
}

export function member(userId, readSeq = 0, deliveredSeq = 0) {
  return { user_id: userId, role: "member", read_seq: readSeq, delivered_seq: deliveredSeq, joined_at: "2026-11-27T09:00:00Z" };
}

export function convObj(id = CONV, lastSeq = 0, members = [member(USER), member(BOB)], kind = "direct") {
  return { id, kind, title: kind === "group" ? "g" : "", last_seq: lastSeq, created_at: "2026-11-27T09:00:00Z", members };
}

export function msg(seq, extra = {}) {
  return {
    id: "m-" + seq,
    conversation_id: CONV,
    seq,
    sender_id: BOB,
    sender_device_id: "dev-bob",
    client_msg_id: "c-" + seq,
    type: "text",
    body: "hello " + seq,
    created_at: "2026-11-27T09:30:00Z",
    ...extra,
  };
}

/** syncReply answers the last sync frame on ws. */
export function syncReply(ws, result) {
  const s = ws.lastOf("sync");
  ws.frame({ type: "sync_result", id: s.id, position: "pos-1", has_more: false, conversations: [], ...result });
}

/**
 * online logs in (or restores), connects and answers the first sync with
 * `conversations`; returns the socket.
 */
export async function online(client, { conversations = [], restore = false, sync = {} } = {}) {
  if (restore) await client.restore();
  else await client.login("alice", "correct horse battery");
  const connected = client.connect();
  const ws = await waitFor(() => FakeWebSocket.last, "a socket");
  ready(ws);
  await connected;
  await waitFor(() => ws.lastOf("sync"), "a sync frame");
  syncReply(ws, { conversations, ...sync });
  await flush();
  return ws;
}

export function entry(conv, messages = [], extra = {}) {
  return { conversation: conv, read_seq: 0, unread_count: 0, messages, ...extra };
}
