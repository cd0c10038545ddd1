// The shared protocol scenarios of testdata/conformance (README.md there
// says what they mean), run against the TypeScript SDK. This file plays the
// server in process: a fake WebSocket class given as the `WebSocket`
// option and a fake `fetch` (tickets, login, refresh and the other REST
// calls a scenario scripts). No sockets. The Go SDK runs the same files
// (client/conformance_test.go).
import { test } from "node:test";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ParleyClient } from "../../dist/esm/index.js";

const dir = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../testdata/conformance");
const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
const SERVER = "http://conformance.test";
const DEFAULT_TIMEOUT = 5000;
const SETTLE_MS = 300;

if (files.length === 0) throw new Error("no scenarios in " + dir);

for (const file of files) {
  const name = file.replace(/\.json$/, "");
  test(name, async () => {
    const sc = JSON.parse(readFileSync(join(dir, file), "utf8"));
    await runScenario(name, sc);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const js = (v) => JSON.stringify(v);

/** waitFor polls fn until it returns something other than undefined, or the timeout. */
async function waitFor(fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() >= end) return undefined;
    await sleep(5);
  }
}

/** A Storage that the runner can look into (the SDK's layout is its own). */
class SpyStorage {
  m = new Map();
  async get(k) {
    const v = this.m.get(k);
    return v === undefined ? undefined : JSON.parse(v);
  }
  async set(k, v) {
    this.m.set(k, JSON.stringify(v));
  }
  async delete(k) {
    this.m.delete(k);
  }
  async keys(prefix) {
    return [...this.m.keys()].filter((k) => k.startsWith(prefix));
  }
  /** holds: some stored value is exactly this string. */
  holds(s) {
    return [...this.m.values()].some((v) => v === JSON.stringify(s));
  }
}

/** FakeNet is the server side: sockets the SDK opened, REST calls waiting for an answer. */
class FakeNet {
  sockets = [];
  rests = [];
  tickets = new Map();
  n = 0;
  login = null; // the login answer while the prelude runs

  fetch = async (url, init) => {
    const u = new URL(url);
    const auth = (init.headers && (init.headers.Authorization || init.headers.authorization)) || "";
    const token = auth.startsWith("Bearer ") ? auth.slice(7) : "";
    const body = init.body ? JSON.parse(init.body) : undefined;
    if (init.method === "POST" && u.pathname === "/v1/ws/ticket") {
      if (!token) return reply(401, { error: { code: "unauthorized", message: "no token" } });
      const ticket = "wst_" + ++this.n;
      this.tickets.set(ticket, token);
      return reply(200, { ticket, expires_in: 30 });
    }
    if (this.login && init.method === "POST" && u.pathname === "/v1/sessions") return reply(200, this.login);
    return new Promise((res) => this.rests.push({ method: init.method, path: u.pathname + u.search, body, answer: res }));
  };

  WebSocket = makeWebSocket(this);
}

function reply(status, body) {
  const text = body === undefined ? "" : JSON.stringify(body);
  return { status, headers: { get: () => null }, text: async () => text };
}

function makeWebSocket(net) {
  return class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    CONNECTING = 0;
    OPEN = 1;
    CLOSING = 2;
    CLOSED = 3;
    readyState = 0;
    binaryType = "blob";
    bufferedAmount = 0;
    protocol = "";
    extensions = "";
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;

    constructor(url) {
      this.url = url;
      const q = new URL(url).searchParams;
      this.token = q.has("ticket") ? net.tickets.get(q.get("ticket")) || "<unknown or used ticket>" : q.get("access_token") || "";
      if (q.has("ticket")) net.tickets.delete(q.get("ticket")); // one socket, once
      this.frames = []; // client frames, pings answered and left out
      this.clientClose = undefined; // the code the SDK closed with
      this.listeners = new Map();
      net.sockets.push(this);
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.fire("open", { type: "open" });
      }, 0);
    }
    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type).add(fn);
    }
    removeEventListener(type, fn) {
      this.listeners.get(type)?.delete(fn);
    }
    fire(type, ev) {
      const h = this["on" + type];
      if (h) h.call(this, ev);
      for (const fn of this.listeners.get(type) || []) fn.call(this, ev);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      let f;
      try {
        f = JSON.parse(data);
      } catch {
        f = { type: "<undecodable>", raw: String(data) };
      }
      if (f.type === "ping") {
        const pong = { type: "pong" };
        if (f.id !== undefined) pong.id = f.id;
        setTimeout(() => this.serverSend(pong), 0);
        return;
      }
      this.frames.push(f);
    }
    close(code, reason) {
      if (this.readyState >= 2) return;
      this.clientClose = code === undefined ? 1005 : code;
      this.readyState = 3;
      setTimeout(() => this.fire("close", { type: "close", code: this.clientClose, reason: reason || "", wasClean: true }), 0);
    }
    serverSend(f) {
      if (this.readyState !== 1) return false;
      this.fire("message", { type: "message", data: JSON.stringify(f) });
      return true;
    }
    serverClose(code, reason) {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      if (!code) this.fire("error", { type: "error" });
      this.fire("close", { type: "close", code: code || 1006, reason: reason || "", wasClean: !!code });
    }
  };
}

/** normalise turns an SDK event into the suite's shape (README.md, Events); undefined to drop it. */
function normalise(e) {
  const msg = (kind, m) => {
    const out = { kind, conversation_id: m.conversationId, seq: m.seq, body: m.body, client_msg_id: m.clientMsgId, sender_id: m.senderId };
    if (m.deleted) out.deleted = true;
    if (m.editedAt) out.edited_at = m.editedAt;
    return out;
  };
  switch (e.type) {
    case "status":
      return e.status === "stopped" ? { kind: "stopped" } : undefined;
    case "connected":
      return { kind: "connected", reconnect: e.reconnect };
    case "synced":
      return { kind: "synced" };
    case "disconnected":
      // 1006 is what a browser reports when no close frame came: no code, as in Go.
      return e.code === undefined || e.code === 1006 ? { kind: "disconnected" } : { kind: "disconnected", code: e.code };
    case "session_ended":
      return { kind: "session_ended" };
    case "message":
      return msg("message", e.message);
    case "message_changed":
      return msg("message_changed", e.message);
    case "receipt": {
      const out = { kind: "receipt", conversation_id: e.conversationId, user_id: e.userId, receipt: e.kind, seq: e.seq };
      if (e.deviceId !== undefined) out.device_id = e.deviceId;
      return out;
    }
    case "typing":
      return { kind: "typing", conversation_id: e.conversationId, user_id: e.userId, state: e.state };
    case "presence": {
      const out = { kind: "presence", user_id: e.userId, state: e.state };
      if (e.lastSeen) out.last_seen = e.lastSeen;
      return out;
    }
    case "conversation":
      return { kind: "conversation", conversation_id: e.conversation && e.conversation.id, action: e.action };
    case "conversation_removed":
      return { kind: "conversation_removed", conversation_id: e.conversationId };
    case "send_failed":
      return { kind: "send_failed", conversation_id: e.conversationId, client_msg_id: e.clientMsgId, code: e.error && e.error.code };
  }
  return undefined;
}

const EVENT_TYPES = ["status", "connected", "synced", "disconnected", "session_ended", "message", "message_changed", "receipt", "typing", "presence", "conversation", "conversation_removed", "send_failed", "token"];

class ScenarioError extends Error {}

function stepKind(s) {
  const kinds = ["action", "expect_connect", "server", "expect", "event", "rest", "disconnect", "expect_close", "no_frame", "state"].filter((k) => s[k] !== undefined);
  return kinds.length === 1 ? kinds[0] : `invalid(${kinds.join(",")})`;
}

function newClient(net, storage) {
  return new ParleyClient({
    server: SERVER,
    storage,
    WebSocket: net.WebSocket,
    fetch: net.fetch,
    platform: "cli",
    backoff: { minMs: 10, maxMs: 50 },
    deliveredDelayMs: 300,
  });
}

/**
 * prelude makes the scenario's initial state with the SDK's own public
 * calls on the storage (README.md, state): login, a full-state sync that
 * leaves the held conversations and the position, the outbox written
 * without connecting.
 */
async function prelude(net, storage, st) {
  net.login = {
    access_token: st.access_token,
    refresh_token: st.refresh_token,
    expires_in: st.access_expires_in,
    user_id: st.user_id,
    device_id: st.device_id,
    device_token: "dt-1",
  };
  const c0 = newClient(net, storage);
  await c0.login("me", "a long enough password");
  net.login = null;
  const held = Object.entries(st.held || {});
  if (st.position || held.length) {
    let synced = false;
    c0.on("synced", () => (synced = true));
    const connected = c0.connect();
    const sock = await waitFor(() => net.sockets[0], DEFAULT_TIMEOUT);
    if (!sock) throw new ScenarioError("prelude: the SDK opened no socket");
    await waitFor(() => (sock.readyState === 1 ? true : undefined), DEFAULT_TIMEOUT);
    sock.serverSend(fillDefaults({ type: "ready" }, st));
    await connected;
    const sync = await waitFor(() => sock.frames.find((f) => f.type === "sync"), DEFAULT_TIMEOUT);
    if (!sync) throw new ScenarioError("prelude: no sync frame");
    const conversations = held.map(([id, upto]) => ({
      conversation: { id, last_seq: upto },
      read_seq: upto,
      messages: upto > 0 ? [{ conversation_id: id, seq: upto }] : [],
    }));
    sock.serverSend(fillDefaults({ type: "sync_result", id: sync.id, position: st.position || "", full_state: true, conversations }, st));
    if (!(await waitFor(() => (synced ? true : undefined), DEFAULT_TIMEOUT))) throw new ScenarioError("prelude: no synced event");
    await c0.close();
  }
  if ((st.outbox || []).length) {
    const c1 = newClient(net, storage);
    if (!(await c1.restore())) throw new ScenarioError("prelude: restore() found no login");
    for (const o of st.outbox) c1.send(o.conversation_id, o.body, { clientMsgId: o.client_msg_id });
    await sleep(20);
    await c1.close();
  }
  net.sockets.length = 0;
  net.rests.length = 0;
}

async function runScenario(name, sc) {
  const st = {
    user_id: "u-me",
    device_id: "d-me",
    access_token: "at-1",
    refresh_token: "rt-1",
    access_expires_in: 900,
    position: "",
    held: {},
    outbox: [],
    ...(sc.state || {}),
  };
  const net = new FakeNet();
  const storage = new SpyStorage();
  await prelude(net, storage, st);

  const client = newClient(net, storage);
  if (!(await client.restore())) throw new ScenarioError(`scenario ${name}: restore() found no login`);
  const ignore = new Set(sc.ignore || []);
  const watched = new Set(sc.events || []);
  for (const s of sc.steps) if (s.event && (!s.sdk || s.sdk === "ts")) watched.add(s.event.kind);
  const queues = new Map();
  for (const type of EVENT_TYPES)
    client.on(type, (e) => {
      const n = normalise(e);
      if (n && watched.has(n.kind)) {
        if (!queues.has(n.kind)) queues.set(n.kind, []);
        queues.get(n.kind).push(n);
      }
    });
  const caps = new Map();
  let conn = null; // the newest socket
  let nextSocket = 0;
  let idx = 0;
  let tag = "";
  const fail = (msg) => {
    throw new ScenarioError(`scenario ${name}, step ${idx} (${tag}): ${msg}`);
  };
  const nextFrame = async (ms) =>
    waitFor(() => {
      if (!conn) return undefined;
      while (conn.frames.length) {
        const f = conn.frames.shift();
        if (!ignore.has(f.type)) return f;
      }
      return undefined;
    }, ms);
  const pendingRest = () => {
    const call = net.rests.shift();
    if (!call) return "";
    call.answer(reply(500, { error: { code: "internal", message: "unexpected" } }));
    return ` (meanwhile an unexpected REST call: ${call.method} ${call.path} ${js(call.body)})`;
  };
  const quiet = async (ms, end) => {
    const f = await nextFrame(ms);
    if (f) fail(`unexpected client frame ${js(f)}`);
    if (net.sockets.length > nextSocket) fail(`unexpected new socket (token ${js(net.sockets[nextSocket].token)})`);
    const call = net.rests.shift();
    if (call) {
      call.answer(reply(500, { error: { code: "internal", message: "unexpected" } }));
      fail(`unexpected REST call ${call.method} ${call.path} ${js(call.body)}`);
    }
    if (end) {
      const left = [...queues.keys()].sort().flatMap((k) => queues.get(k));
      if (left.length) fail(`events left unconsumed: ${js(left)}`);
    }
  };

  try {
    for (idx = 0; idx < sc.steps.length; idx++) {
      const s = sc.steps[idx];
      if (s.sdk && s.sdk !== "ts") continue;
      tag = stepKind(s);
      const timeout = s.timeout_ms || DEFAULT_TIMEOUT;
      switch (tag) {
        case "action":
          action(client, s.action, fail);
          break;
        case "expect_connect": {
          const sock = await waitFor(() => net.sockets[nextSocket], timeout);
          if (!sock) fail(`no new socket within ${timeout} ms${pendingRest()}`);
          nextSocket++;
          conn = sock;
          if (s.expect_connect.token !== undefined && sock.token !== s.expect_connect.token)
            fail(`the socket was opened with token ${js(sock.token)}, want ${js(s.expect_connect.token)}`);
          if (!(await waitFor(() => (sock.readyState === 1 ? true : undefined), timeout))) fail("the socket did not open");
          break;
        }
        case "server": {
          if (!conn) fail("no socket to send on");
          const f = fillDefaults(substitute(s.server, caps, fail), st);
          if (!conn.serverSend(f)) fail(`the socket is not open to send ${js(f)}`);
          await sleep(0);
          break;
        }
        case "expect": {
          const f = await nextFrame(timeout);
          if (!f) fail(`no client frame within ${timeout} ms, want ${js(s.expect)}${pendingRest()}`);
          const err = match(s.expect, f, caps, "");
          if (err) fail(`client frame ${js(f)} does not match ${js(s.expect)}: ${err}`);
          break;
        }
        case "event": {
          const kind = s.event.kind;
          const e = await waitFor(() => {
            const q = queues.get(kind);
            return q && q.length ? q.shift() : undefined;
          }, timeout);
          if (!e) fail(`no ${kind} event within ${timeout} ms, want ${js(s.event)}`);
          const err = match(s.event, e, caps, "");
          if (err) fail(`event ${js(e)} does not match ${js(s.event)}: ${err}`);
          break;
        }
        case "rest": {
          const r = s.rest;
          const call = await waitFor(() => net.rests.shift(), timeout);
          if (!call) fail(`no REST call within ${timeout} ms, want ${r.method} ${r.path}`);
          const body = r.response === undefined ? undefined : substitute(r.response, caps, fail);
          call.answer(reply(r.status || 200, body));
          if (call.method !== r.method || call.path !== r.path) fail(`REST call ${call.method} ${call.path}, want ${r.method} ${r.path}`);
          if (r.request !== undefined) {
            const err = match(r.request, call.body, caps, "");
            if (err) fail(`REST body ${js(call.body)} does not match ${js(r.request)}: ${err}`);
          }
          await sleep(0);
          break;
        }
        case "disconnect":
          if (!conn) fail("no socket to drop");
          conn.serverClose(s.disconnect.code, s.disconnect.reason);
          break;
        case "expect_close": {
          if (!conn) fail("no socket");
          const sock = conn;
          const code = await waitFor(() => {
            while (sock.frames.length) {
              const f = sock.frames.shift();
              if (!ignore.has(f.type)) fail(`client frame ${js(f)} while waiting for the close`);
            }
            return sock.clientClose;
          }, timeout);
          if (code === undefined) fail(`the SDK did not close the socket within ${timeout} ms`);
          if (s.expect_close.code !== undefined && code !== s.expect_close.code) fail(`the SDK closed with ${code}, want ${s.expect_close.code}`);
          break;
        }
        case "no_frame":
          await quiet(s.no_frame.ms, false);
          break;
        case "state": {
          let got;
          const ok = await waitFor(() => {
            got = {};
            if ("position" in s.state) got.position = storage.holds(s.state.position) ? s.state.position : "<not stored>";
            if ("outbox" in s.state) got.outbox = client.outbox().map((o) => o.clientMsgId);
            if (s.state.conversations) {
              got.conversations = {};
              for (const id of Object.keys(s.state.conversations)) got.conversations[id] = client.conversation(id) !== undefined;
            }
            return match(s.state, got, new Map(), "") ? undefined : true;
          }, timeout);
          if (!ok) fail(`state ${js(got)} does not match ${js(s.state)}: ${match(s.state, got, new Map(), "")}`);
          break;
        }
        default:
          fail("a step needs exactly one of action, expect_connect, server, expect, event, rest, disconnect, expect_close, no_frame, state");
      }
    }
    idx = sc.steps.length;
    tag = "end";
    await quiet(SETTLE_MS, true);
  } finally {
    await Promise.race([client.close(), sleep(5000)]);
    for (const call of net.rests.splice(0)) call.answer(reply(500, { error: { code: "internal", message: "scenario over" } }));
  }
}

function action(client, a, fail) {
  switch (a.do) {
    case "connect":
      client.connect().catch(() => {}); // resolves at ready, which a later step sends
      return;
    case "send": {
      const opts = a.client_msg_id ? { clientMsgId: a.client_msg_id } : {};
      client.send(a.conversation_id, a.body, opts).acked.catch(() => {});
      return;
    }
    case "read":
      client.markRead(a.conversation_id, a.seq).catch(() => {});
      return;
    case "typing":
      client.typing(a.conversation_id, a.state);
      return;
    case "close":
      client.close().catch(() => {});
      return;
  }
  fail(`unknown action ${js(a.do)}`);
}

/** match checks actual against pattern (README.md, Matching); it returns an error string or "". */
function match(pattern, actual, caps, path) {
  const where = path ? path.replace(/^\./, "") : "value";
  if (pattern === null) return actual === undefined || actual === null || actual === "" ? "" : `${where}: got ${js(actual)}, want absent or empty`;
  if (typeof pattern === "string") {
    if (pattern.length > 1 && pattern.startsWith("$")) {
      if (caps.has(pattern)) return deepEqual(caps.get(pattern), actual) ? "" : `${where}: got ${js(actual)}, want ${pattern} = ${js(caps.get(pattern))}`;
      if (actual === undefined || actual === null) return `${where}: absent, want a value for ${pattern}`;
      caps.set(pattern, actual);
      return "";
    }
    return actual === pattern ? "" : `${where}: got ${js(actual)}, want ${js(pattern)}`;
  }
  if (typeof pattern === "number" || typeof pattern === "boolean") return actual === pattern ? "" : `${where}: got ${js(actual)}, want ${js(pattern)}`;
  if (Array.isArray(pattern)) {
    if (!Array.isArray(actual)) return actual === undefined && pattern.length === 0 ? "" : `${where}: got ${js(actual)}, want an array`;
    if (actual.length !== pattern.length) return `${where}: got ${actual.length} elements ${js(actual)}, want ${pattern.length}`;
    for (let i = 0; i < pattern.length; i++) {
      const err = match(pattern[i], actual[i], caps, `${path}[${i}]`);
      if (err) return err;
    }
    return "";
  }
  if (typeof pattern === "object") {
    if (!actual || typeof actual !== "object" || Array.isArray(actual)) return `${where}: got ${js(actual)}, want an object`;
    for (const k of Object.keys(pattern).sort()) {
      const err = match(pattern[k], actual[k], caps, `${path}.${k}`);
      if (err) return err;
    }
    return "";
  }
  return `${where}: unsupported pattern ${js(pattern)}`;
}

function deepEqual(a, b) {
  return js(a) === js(b);
}

/** substitute replaces "$name" strings with their captured values, and "$now+Ns" with the time N seconds from now. */
function substitute(v, caps, fail) {
  const now = typeof v === "string" && /^\$now\+(\d+)s$/.exec(v);
  if (now) return new Date(Date.now() + Number(now[1]) * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  if (typeof v === "string" && v.length > 1 && v.startsWith("$")) {
    if (!caps.has(v)) fail(`${v} is not captured yet`);
    return caps.get(v);
  }
  if (Array.isArray(v)) return v.map((x) => substitute(x, caps, fail));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substitute(x, caps, fail)]));
  return v;
}

/** fillDefaults completes a server frame (README.md, Defaults); it returns a copy. */
function fillDefaults(frame, st) {
  const f = structuredClone(frame);
  const def = (o, k, v) => {
    if (!(k in o)) o[k] = v;
  };
  const fillMessage = (m) => {
    def(m, "id", `m-${m.conversation_id}-${m.seq}`);
    def(m, "sender_id", "u-bob");
    def(m, "sender_device_id", "d-bob");
    def(m, "client_msg_id", `cm-${m.conversation_id}-${m.seq}`);
    def(m, "type", "text");
    def(m, "body", `message ${m.seq}`);
    def(m, "created_at", "2026-11-27T09:00:00Z");
  };
  const fillConversation = (c, lastSeq) => {
    def(c, "kind", "direct");
    def(c, "title", "");
    def(c, "created_at", "2026-11-27T08:00:00Z");
    def(c, "last_seq", lastSeq);
    const member = (u) => ({ user_id: u, role: "member", read_seq: 0, delivered_seq: 0, joined_at: c.created_at });
    def(c, "members", [member(st.user_id), member("u-bob")]);
  };
  switch (f.type) {
    case "ready":
      def(f, "user_id", st.user_id);
      def(f, "device_id", st.device_id);
      def(f, "ping_interval", 25);
      def(f, "token_expires_at", "2036-01-01T00:00:00Z");
      def(f, "max_frame_bytes", 131072);
      break;
    case "message":
    case "ack":
      if (f.message && typeof f.message === "object") fillMessage(f.message);
      break;
    case "history_result":
      for (const m of f.messages || []) fillMessage(m);
      break;
    case "sync_result":
      def(f, "has_more", false);
      for (const e of f.conversations || []) {
        def(e, "read_seq", 0);
        def(e, "unread_count", 0);
        def(e, "messages", []);
        let last = 0;
        for (const m of e.messages) {
          fillMessage(m);
          if (m.seq > last) last = m.seq;
        }
        if (e.conversation && e.removed !== true) fillConversation(e.conversation, last);
      }
      break;
    case "conversation":
      if (f.conversation && f.action !== "deleted") fillConversation(f.conversation, 0);
      break;
  }
  return f;
}
