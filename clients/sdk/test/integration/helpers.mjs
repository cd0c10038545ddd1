// Shared helpers of the SDK's integration tests: the real parleyd (through
// clients/testkit), SDK clients on Node (`ws` as the WebSocket, the global
// fetch), a small raw REST client for the other side of a scenario, and
// polling and recording utilities. Not a test file (node --test runs only
// *.test.mjs here).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { WebSocket } from "ws";
import { startParleyd } from "../../../testkit/parleyd.mjs";
import { ParleyClient, MemoryStorage } from "../../dist/esm/index.js";

export { sleep, WebSocket, ParleyClient, MemoryStorage };

export const PASSWORD = "correct horse battery";

/** EVENTS are the event types a recorder listens to (API.md, Events). */
export const EVENTS = [
  "status", "connected", "synced", "disconnected", "session_ended", "message",
  "message_changed", "conversation", "conversation_removed", "receipt",
  "typing", "presence", "send_failed", "token",
];

/**
 * server starts parleyd for test t (rate limits off unless args say
 * otherwise) and removes it with its data when t ends.
 */
export async function server(t, { args = [], env = {} } = {}) {
  const all = args.includes("--limits") ? args : ["--limits", "off", ...args];
  const srv = await startParleyd({ args: all, env });
  t.after(async () => {
    if (srv.pid) {
      try { process.kill(srv.pid, "SIGCONT"); } catch { /* gone */ }
    }
    await srv.cleanup();
  });
  return srv;
}

let handleCounter = 0;
/** uniqueHandle makes a handle no other test of this run uses (3-32 of a-z0-9_). */
export function uniqueHandle(name) {
  handleCounter++;
  return `${name}_${process.pid.toString(36)}${handleCounter}${Math.random().toString(36).slice(2, 6)}`.slice(0, 32);
}

/**
 * client makes a ParleyClient for base with Node's transports and quick
 * test timings, and closes it when t ends. opts override the defaults.
 */
export function client(t, base, opts = {}) {
  const c = new ParleyClient({
    server: base,
    storage: new MemoryStorage(),
    WebSocket,
    fetch: globalThis.fetch,
    platform: "cli",
    deviceName: "integration test",
    backoff: { minMs: 100, maxMs: 1000 },
    deliveredDelayMs: 100,
    ...opts,
  });
  t.after(async () => {
    try { await withTimeout(c.close(), 5000, "close"); } catch { /* best effort */ }
  });
  return c;
}

/**
 * account registers a new user through an SDK client, logs that client in
 * (its first device) and returns { handle, user, client }.
 */
export async function account(t, base, name, opts = {}) {
  const handle = uniqueHandle(name);
  const c = client(t, base, opts);
  const user = await c.register(handle, PASSWORD, name);
  assert.equal(user.handle, handle);
  const session = await c.login(handle, PASSWORD);
  assert.equal(session.userId, user.id);
  return { handle, user, client: c };
}

/** device logs handle in on a new device (a new SDK client). */
export async function device(t, base, handle, opts = {}) {
  const c = client(t, base, opts);
  await c.login(handle, PASSWORD);
  return c;
}

/**
 * record collects every event of c, in order, with the time it came:
 * rec.all is [{ type, at, e }]; rec.of(type) the payloads of one type.
 * Subscribe before connect() so nothing is missed.
 */
export function record(c) {
  const all = [];
  const offs = EVENTS.map((type) => c.on(type, (e) => { all.push({ type, at: Date.now(), e }); }));
  return {
    all,
    of: (type, since = 0) => all.filter((r) => r.type === type && r.at >= since).map((r) => r.e),
    stop: () => offs.forEach((off) => off()),
    /** messages: the `message` events' messages of one conversation, in arrival order. */
    messages: (conversationId) =>
      all.filter((r) => r.type === "message" && r.e.message.conversationId === conversationId).map((r) => r.e.message),
  };
}

/**
 * waitFor polls fn (sync or async) every interval ms until it returns a
 * truthy value, which it returns; after timeout ms it fails with what and
 * detail()'s text. A promise that fn returns is awaited: return a flag,
 * not a pending promise.
 */
export async function waitFor(fn, { timeout = 10000, interval = 25, what = "condition", detail } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      let extra = "";
      if (detail) {
        try { extra = "\n" + (typeof detail === "function" ? await detail() : detail); } catch (e) { extra = "\n(detail failed: " + e + ")"; }
      }
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${extra}`);
    }
    await sleep(interval);
  }
}

/** withTimeout rejects when p has not settled within ms. */
export function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * send calls c.send and marks its `acked` promise handled (a test that
 * ends with sends unacked must not fail on an unhandled rejection);
 * callers still await out.acked where it matters.
 */
export function send(c, conversationId, body, opts) {
  const out = c.send(conversationId, body, opts);
  out.acked.catch(() => {});
  return out;
}

/** seqs lists the seqs of messages. */
export const seqs = (messages) => messages.map((m) => m.seq);

/** range is [from, from+1, ..., to]. */
export function range(from, to) {
  const r = [];
  for (let i = from; i <= to; i++) r.push(i);
  return r;
}

/** pool runs fn over items with at most n at a time; results in item order. */
export async function pool(n, items, fn) {
  const results = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  }));
  return results;
}

/**
 * Rest is a bare REST client (raw fetch, snake_case as on the wire) for
 * the parts of a scenario that are not the SDK under test: other users'
 * sends, the server's history as the truth. Tokens are the default 15
 * minutes; it does not refresh.
 */
export class Rest {
  constructor(base, token, userId, deviceId) {
    this.base = base;
    this.token = token;
    this.userId = userId;
    this.deviceId = deviceId;
  }

  /** register creates a user and returns { id, handle }. */
  static async register(base, name) {
    const handle = uniqueHandle(name);
    const res = await call(base, "POST", "/v1/accounts", null, { handle, password: PASSWORD, display_name: name });
    return { id: res.user ? res.user.id : res.id, handle };
  }

  /** login logs handle in on a new device. */
  static async login(base, handle) {
    const s = await call(base, "POST", "/v1/sessions", null, { handle, password: PASSWORD, device: { platform: "cli", name: "rest" } });
    return new Rest(base, s.access_token, s.user_id, s.device_id);
  }

  /** user registers and logs in: a Rest with .handle. */
  static async user(base, name) {
    const u = await Rest.register(base, name);
    const r = await Rest.login(base, u.handle);
    r.handle = u.handle;
    return r;
  }

  req(method, path, body) { return call(this.base, method, path, this.token, body); }

  async createDirect(userId) {
    return (await this.req("POST", "/v1/conversations", { kind: "direct", members: [userId] })).conversation;
  }

  async createGroup(title, memberIds) {
    return (await this.req("POST", "/v1/conversations", { kind: "group", title, members: memberIds })).conversation;
  }

  async conversation(id) {
    return (await this.req("GET", `/v1/conversations/${id}`)).conversation;
  }

  async send(conversationId, body, clientMsgId = randomUUID()) {
    return (await this.req("POST", `/v1/conversations/${conversationId}/messages`, { client_msg_id: clientMsgId, body })).message;
  }

  async read(conversationId, seq) {
    await this.req("POST", `/v1/conversations/${conversationId}/read`, { seq });
  }

  /** history reads a conversation's whole history, oldest first. */
  async history(conversationId) {
    const all = [];
    let after = 0;
    for (;;) {
      const page = await this.req("GET", `/v1/conversations/${conversationId}/messages?after=${after}&limit=200`);
      all.push(...page.messages);
      if (page.messages.length === 0 || (page.messages.length < 200 && !page.truncated)) return all;
      after = page.messages[page.messages.length - 1].seq;
    }
  }
}

async function call(base, method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = "Bearer " + token;
  const res = await fetch(base + path, { method, headers, body: body === undefined || body === null ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

/**
 * cuttable wraps fetch and `ws` so that a test can cut a client off the
 * network at once, as a crash of its process would: cut() terminates its
 * sockets, and from then on its fetches reject and its sockets fail to
 * connect. opts.failFetch(url) makes single fetches fail ("fetch failed",
 * as undici says when the network is down) while it returns true.
 * frames lists what went over the sockets: { dir: "out" | "in", type }
 * and closes lists close codes seen.
 */
export function cuttable(opts = {}) {
  const state = { dead: false, sockets: new Set(), frames: [], closes: [] };
  class Socket extends WebSocket {
    constructor(url, protocols, options) {
      super(state.dead ? "ws://127.0.0.1:1/" : url, protocols, options);
      state.sockets.add(this);
      this.addEventListener("message", (ev) => {
        try { state.frames.push({ dir: "in", type: JSON.parse(String(ev.data)).type, at: Date.now() }); } catch { /* not JSON */ }
      });
      this.addEventListener("close", (ev) => { state.sockets.delete(this); state.closes.push({ code: ev.code, at: Date.now() }); });
    }

    send(data, ...rest) {
      try { state.frames.push({ dir: "out", type: JSON.parse(String(data)).type, at: Date.now() }); } catch { /* not JSON */ }
      return super.send(data, ...rest);
    }
  }
  return {
    state,
    WebSocket: Socket,
    fetch: (input, init) => {
      const url = typeof input === "string" ? input : input.url;
      if (state.dead || (opts.failFetch && opts.failFetch(String(url)))) {
        return Promise.reject(new TypeError("fetch failed"));
      }
      return globalThis.fetch(input, init);
    },
    cut() {
      state.dead = true;
      for (const s of state.sockets) s.terminate();
    },
    count: (dir, type) => state.frames.filter((f) => f.dir === dir && f.type === type).length,
  };
}

/** copyStorage copies every key of a Storage into a new MemoryStorage: the disk as it was. */
export async function copyStorage(from) {
  const to = new MemoryStorage();
  for (const key of await from.keys("")) {
    const v = await from.get(key);
    if (v !== undefined) await to.set(key, structuredClone(v));
  }
  return to;
}
