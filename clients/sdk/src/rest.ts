import { ParleyError, asError } from "./errors.js";
import { MemoryStorage, type Storage } from "./storage.js";
import type { ClientOptions, FetchFn, FetchResponse, Logger, ParleyEvent, ParleyEvents, EventType, Session, User } from "./types.js";
import { camel } from "./util.js";

/** What the SDK stores under the key "tokens". */
export interface StoredTokens {
  userId: string;
  deviceId: string;
  accessToken: string;
  refreshToken: string;
  /** ms since the epoch */
  accessExpiresAt: number;
  /** the access token's lifetime in ms, for the refresh margin */
  lifetimeMs: number;
}

interface SessionResponse {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  user_id: string;
  device_id: string;
  device_token?: string;
}

type Handler = (e: any) => void;

/** An events() iterator's queue. */
interface EventQueue {
  q: ParleyEvent[];
  wake?: (r: IteratorResult<ParleyEvent>) => void;
}

/** How many events one events() iterator buffers; past it the oldest are dropped. */
export const EVENT_BUFFER = 1000;

/**
 * Rest is the HTTP half of ParleyClient: tokens, refresh, REST calls and the
 * event hub. ParleyClient adds the realtime half.
 */
export class Rest {
  protected o: Required<Pick<ClientOptions, "platform" | "syncLimit" | "pingTimeoutMs" | "deliveredDelayMs" | "maxInFlight" | "now" | "random">> &
    ClientOptions & { minMs: number; maxMs: number };
  protected store: Storage;
  protected base: string;
  protected tok: StoredTokens | null = null;
  private refreshing: Promise<void> | null = null;
  private handlers = new Map<string, Set<Handler>>();
  private queues = new Set<EventQueue>();
  private fetchFn: FetchFn;

  constructor(opts: ClientOptions) {
    const b = opts.backoff || {};
    const minMs = b.minMs ?? 500;
    this.o = {
      platform: "web",
      pingTimeoutMs: 10000,
      deliveredDelayMs: 500,
      maxInFlight: 16,
      now: () => Date.now(),
      random: Math.random,
      ...opts,
      syncLimit: Math.min(100, Math.max(1, opts.syncLimit || 50)),
      minMs,
      maxMs: Math.max(minMs, b.maxMs ?? 30000),
    };
    this.store = opts.storage || new MemoryStorage();
    this.base = opts.server.replace(/\/+$/, "");
    // Called detached: a browser's fetch refuses any other `this`.
    this.fetchFn = (u, i) => (opts.fetch || (globalThis as any).fetch)(u, i);
  }

  /** The logged-in session, or null. */
  get session(): Session | null {
    const t = this.tok;
    return t ? { userId: t.userId, deviceId: t.deviceId, accessExpiresAt: t.accessExpiresAt } : null;
  }

  protected log(level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) {
    const l: Logger | undefined = this.o.logger;
    if (l) l(level, msg, fields);
  }

  // ---- events

  /** on calls fn for every event of type; it returns the unsubscribe. */
  on<K extends EventType>(type: K, fn: (e: { type: K } & ParleyEvents[K]) => void): () => void {
    let s = this.handlers.get(type);
    if (!s) this.handlers.set(type, (s = new Set()));
    s.add(fn);
    return () => void s!.delete(fn);
  }

  /**
   * events is every event, in order, from now on. Each iterator buffers at
   * most bufferSize events (default 1000) that the app has not taken yet;
   * past that the oldest are dropped (a slow consumer misses events; it
   * never blocks the client or grows without bound). Break out of the
   * for-await loop to stop.
   */
  events(bufferSize = EVENT_BUFFER): AsyncIterableIterator<ParleyEvent> {
    const eq: EventQueue = { q: [] };
    (eq as any).max = bufferSize;
    this.queues.add(eq);
    const it: AsyncIterableIterator<ParleyEvent> = {
      next: () => {
        const e = eq.q.shift();
        if (e) return Promise.resolve({ value: e, done: false });
        if (!this.queues.has(eq)) return Promise.resolve({ value: undefined, done: true });
        return new Promise((res) => (eq.wake = res));
      },
      return: () => {
        this.queues.delete(eq);
        eq.q = [];
        const w = eq.wake;
        eq.wake = undefined;
        if (w) w({ value: undefined, done: true });
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  protected emit<K extends EventType>(type: K, payload: ParleyEvents[K]) {
    const e = { type, ...payload } as ParleyEvent;
    for (const fn of [...(this.handlers.get(type) || [])]) {
      try {
        fn(e);
      } catch (err) {
        this.log("error", "event handler threw", { type, error: String(err) });
      }
    }
    for (const eq of this.queues) {
      if (eq.wake) {
        const w = eq.wake;
        eq.wake = undefined;
        w({ value: e, done: false });
      } else {
        eq.q.push(e);
        if (eq.q.length > (eq as any).max) eq.q.shift();
      }
    }
  }

  // ---- HTTP

  private async raw<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    // A hung call fails after requestTimeoutMs (and is aborted where AbortController exists):
    // a reconnect waiting on a ticket or refresh must not stay "connecting" for good.
    const AC = (globalThis as any).AbortController;
    const ac = AC ? new AC() : undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (ac) ac.abort();
        reject(new ParleyError("timeout", `${method} ${path}: no answer within ${this.o.requestTimeoutMs ?? 15000} ms`));
      }, this.o.requestTimeoutMs ?? 15000);
    });
    let res;
    let text: string;
    try {
      try {
        const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
        if (ac) (init as Record<string, unknown>).signal = ac.signal; // not in FetchFn: window.fetch stays assignable
        res = await Promise.race([this.fetchFn(this.base + path, init), timeout]);
      } catch (e) {
        if (e instanceof ParleyError) throw e;
        throw new ParleyError("network", `${method} ${path}: ${asError(e).message}`);
      }
      text = await Promise.race([res.text().catch(() => ""), timeout]);
    } finally {
      clearTimeout(timer);
    }
    let data: any;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      data = undefined;
    }
    if (res.status >= 300) {
      const e = data && data.error;
      const s = res.status;
      const ra = Number(res.headers.get("Retry-After"));
      const err = new ParleyError(
        (e && e.code) || (s === 503 ? "unavailable" : s === 404 ? "not_found" : s < 500 ? "invalid_request" : "internal"),
        (e && e.message) || `HTTP ${s}`,
        { status: s, retryAfter: ra > 0 ? ra : undefined, requestId: res.headers.get("X-Request-ID") || undefined },
      );
      if (e) err.data = e;
      throw err;
    }
    return data as T;
  }

  /**
   * request makes an authenticated REST call: it refreshes first when the
   * access token is about to expire, and once more on token_expired. The
   * answer is returned as the server sent it (snake_case).
   */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.accessToken();
      try {
        return await this.raw<T>(method, path, body, token);
      } catch (e) {
        const code = (e as ParleyError).code;
        if (attempt === 0 && (code === "token_expired" || code === "unauthorized") && this.tok) {
          await this.refresh();
          continue;
        }
        if (code === "rate_limited" && attempt < 3) {
          const ra = (e as ParleyError).retryAfter || 1;
          if (ra <= 10) {
            await new Promise<void>((r) => setTimeout(r, ra * 1000));
            continue;
          }
        }
        throw e;
      }
    }
  }

  /** @internal authFetch (media.ts): fetch with the access token, refreshed as request does; the answer as is. */
  async authFetch(path: string, init: { method: string; headers: Record<string, string>; body?: Uint8Array<ArrayBuffer>; signal?: AbortSignal }): Promise<FetchResponse> {
    for (let a = 0; ; a++) {
      const res = await this.fetchFn(this.abs(path), { ...init, headers: { ...init.headers, Authorization: "Bearer " + (await this.accessToken()) } });
      if (res.status !== 401 || a > 0 || !this.tok) return res;
      await this.refresh();
    }
  }

  /** @internal abs makes a server path absolute. */
  abs(path: string): string {
    return path[0] === "/" ? this.base + path : path;
  }

  /** accessToken returns the access token, refreshed first if it expires within the margin. */
  protected async accessToken(): Promise<string> {
    const t = this.tok;
    if (!t) throw new ParleyError("unauthorized", "not logged in");
    const margin = Math.min(60000, t.lifetimeMs / 5);
    if (this.o.now() + margin >= t.accessExpiresAt) await this.refresh();
    return this.tok!.accessToken;
  }

  /**
   * refresh rotates the tokens (one refresh at a time; the new refresh token
   * is stored before this resolves). unauthorized or account_suspended end
   * the session.
   */
  refresh(): Promise<void> {
    if (!this.refreshing) {
      const run = async () => {
        let t = this.tok;
        if (!t) throw new ParleyError("unauthorized", "not logged in");
        // Another instance sharing this storage (a second browser tab) may
        // have rotated the tokens already: our refresh token is then used,
        // and presenting it again would end the session (reuse detection).
        if (await this.adoptStored(t)) return;
        t = this.tok;
        if (!t) throw new ParleyError("unauthorized", "not logged in");
        try {
          const s = await this.raw<SessionResponse>("POST", "/v1/sessions/refresh", { refresh_token: t.refreshToken });
          if (this.tok === t) await this.setTokens(s);
        } catch (e) {
          const err = asError(e);
          if (err.code === "unauthorized" || err.code === "account_suspended") await this.endSession(err);
          throw err;
        }
      };
      const lock = this.o.lock;
      this.refreshing = (lock ? lock("parley-token-refresh", run) : run()).then(() => {}).finally(() => (this.refreshing = null));
    }
    return this.refreshing;
  }

  /**
   * adoptStored takes the stored tokens when another instance rotated them
   * after we read ours. True when they are fresh enough that no refresh is
   * needed; false (with this.tok possibly updated) when a refresh is still due.
   */
  private async adoptStored(t: StoredTokens): Promise<boolean> {
    let st: StoredTokens | undefined;
    try {
      st = await this.store.get<StoredTokens>("tokens");
    } catch {
      return false;
    }
    if (this.tok !== t) return this.tok !== null; // changed while we read (login, logout)
    if (!st || !st.refreshToken || st.refreshToken === t.refreshToken) return false;
    if (st.userId !== t.userId || st.deviceId !== t.deviceId) return false;
    this.tok = st;
    this.log("debug", "adopted tokens rotated by another instance", {});
    this.emit("token", { accessExpiresAt: st.accessExpiresAt });
    const margin = Math.min(60000, st.lifetimeMs / 5);
    return this.o.now() + margin < st.accessExpiresAt;
  }

  private async setTokens(s: SessionResponse) {
    const lifetimeMs = s.expires_in * 1000;
    this.tok = {
      userId: s.user_id,
      deviceId: s.device_id,
      accessToken: s.access_token,
      refreshToken: s.refresh_token,
      accessExpiresAt: this.o.now() + lifetimeMs,
      lifetimeMs,
    };
    await this.store.set("tokens", this.tok);
    if (s.device_token) await this.store.set("device_token", s.device_token);
    this.emit("token", { accessExpiresAt: this.tok.accessExpiresAt });
  }

  /** endSession: the tokens are gone for good. ParleyClient stops its connection. */
  protected async endSession(error: ParleyError): Promise<void> {
    if (!this.tok) return;
    this.tok = null;
    await this.store.delete("tokens").catch(() => {});
    this.emit("session_ended", { error });
  }

  /** loadUser is called once tokens of a user are in place (login, restore). */
  protected async loadUser(): Promise<void> {}

  // ---- accounts and sessions

  async register(handle: string, password: string, displayName?: string): Promise<User> {
    const r = await this.raw<{ user: unknown }>("POST", "/v1/accounts", { handle, password, display_name: displayName || "" });
    return camel<User>(r.user);
  }

  /** login opens a session on this device (sending the stored device_token) and stores the tokens. */
  async login(handle: string, password: string): Promise<Session> {
    const body: Record<string, unknown> = { handle, password, device: { platform: this.o.platform, name: this.o.deviceName || "" } };
    const dt = await this.store.get<string>("device_token");
    if (dt) body.device_token = dt;
    const s = await this.raw<SessionResponse>("POST", "/v1/sessions", body);
    await this.setTokens(s);
    await this.loadUser();
    return this.session!;
  }

  /** restore loads stored tokens and state; true if logged in. */
  async restore(): Promise<boolean> {
    const t = await this.store.get<StoredTokens>("tokens");
    if (!t || !t.refreshToken) return false;
    this.tok = t;
    await this.loadUser();
    return true;
  }

  me(): Promise<User> {
    return this.request<{ user: unknown }>("GET", "/v1/me").then((r) => camel<User>(r.user));
  }

  findUser(handle: string): Promise<User> {
    return this.request<{ user: unknown }>("GET", "/v1/users?handle=" + encodeURIComponent(handle)).then((r) => camel<User>(r.user));
  }

  user(id: string): Promise<User> {
    return this.request<{ user: unknown }>("GET", "/v1/users/" + encodeURIComponent(id)).then((r) => camel<User>(r.user));
  }

  /** vapidPublicKey is the server's VAPID key (base64url) for PushManager.subscribe. */
  async vapidPublicKey(): Promise<string> {
    return (await this.raw<{ public_key: string }>("GET", "/v1/push/vapid")).public_key;
  }
}
