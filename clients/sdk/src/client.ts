import { ParleyError, asError, errorOf } from "./errors.js";
import { Rest } from "./rest.js";
import type {
  ClientOptions,
  ConnectionStatus,
  ConversationState,
  HistoryQuery,
  Member,
  MembersPage,
  ReceiptsSummary,
  Message,
  MessageStatus,
  MessageView,
  Observable,
  OutgoingMessage,
  Presence,
  PushRegistration,
  SealedContent,
  SendOptions,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
import { upload, mediaUrl, type UploadOptions } from "./media.js";
import type { Attachment } from "./types.js";
import { camel, later, least, merge, utf8Length, uuid } from "./util.js";

/** Per conversation: the public view plus the section-7 bookkeeping. */
interface Conv {
  s?: ConversationState;
  /** heldUpto is set */
  known: boolean;
  /** every seq up to here is held or gone */
  heldUpto: number;
  /** highest seq reported delivered */
  reported: number;
  msgs: Map<number, Message>;
  /** messages above heldUpto + 1, waiting for the gap to fill */
  ahead: Map<number, Message>;
  /** a forward backfill is in flight */
  filling: boolean;
  /** unreadCount counts the messages up to this seq (the server's count, then live ones) */
  counted: number;
}

/** What the outbox stores per message, before the first attempt. */
interface OutboxEntry {
  clientMsgId: string;
  conversationId: string;
  type: string;
  body: string;
  ttlSeconds: number;
  attachments?: string[];
  queuedAt: number;
  n: number;
  /** e2ee: the content sealed at send() time (K, ciphertext, signature) */
  env?: SealedContent;
}

interface Pending {
  e: OutboxEntry;
  saved: boolean;
  inFlight: boolean;
  retryAt: number;
  done: boolean;
  acked?: Message;
  failed?: ParleyError;
  resolve: (m: Message) => void;
  reject: (e: ParleyError) => void;
  view: OutgoingMessage;
  /** e2ee: the per-device keys for the next attempt, being sealed (prep), and the last device_mismatch */
  keys?: unknown[];
  prep?: boolean;
  mismatch?: unknown;
  mismatches?: number;
}

interface Sub {
  get: () => MessageStatus;
  fn: (s: MessageStatus) => void;
  last: string;
}

/** Send error codes retried later; every other code refuses the message for good. */
const RETRY = ["rate_limited", "unavailable", "internal"];
/** Failures a read is kept for and sent again after the next sync. */
const NETWORK = ["network", "timeout", ...RETRY];
const HISTORY_LIMIT = 200;
const HISTORY_PARALLEL = 8;

/**
 * ParleyClient is the Parley SDK: REST, one WebSocket with reconnects, the
 * sync algorithm of protocol.md section 7, an outbox, receipts and typing.
 * See clients/sdk/API.md. All methods are for one JavaScript thread.
 */
export class ParleyClient extends Rest {
  status: ConnectionStatus = "offline";
  private WS?: WebSocketConstructor;
  private convs = new Map<string, Conv>();
  private position = "";
  private outq: Pending[] = [];
  /** Refused sends, kept (and stored under failed/) until discard() or retry(). */
  private failq: Pending[] = [];
  private outN = 0;
  private presenceOf = new Map<string, Presence>();
  private typers = new Map<string, Map<string, number>>();
  private typingSent = new Map<string, number>();
  // typingTokens/typingAt: a local bucket below the server's typing limit
  // (2 frames a second, burst 5, per connection), so typing never earns a
  // rate_limited error: a frame over it is dropped (a start lapses, and
  // receivers clear a typer when their message arrives).
  private typingTokens = 4;
  private typingAt = 0;
  private subs = new Map<string, Set<Sub>>();
  private saveQ = new Set<string>();
  private saveTimer = false;
  private loaded = "";
  private writes: Promise<unknown> = Promise.resolve();

  // realtime
  private ws: WebSocketLike | null = null;
  private want = false;
  private gen = 0;
  private attempt = 0;
  private quick = false;
  private everReady = false;
  private readyAt = 0;
  private maxFrame = 131072;
  private pingEvery = 25000;
  private sockExp = 0;
  /** when the last in-band auth was answered (local clock) */
  private authAt = -Infinity;
  /** the last auth did not extend the socket's expiry: refresh before the next */
  private noGain = false;
  private appState: "active" | "background" = "active";
  private reqN = 0;
  private reqs = new Map<string, (f: any) => void>();
  private inflight = new Map<string, Pending>();
  private synced = false;
  private announced = false;
  private pending = 0;
  private hActive = 0;
  private hq: (() => void)[] = [];
  private fullSeen: Set<string> | null = null;
  private dirty = new Set<string>();
  /** reads marked while they could not be sent (offline): sent after the next sync */
  private unsentReads = new Map<string, number>();
  private waiters: { res: () => void; rej: (e: ParleyError) => void }[] = [];
  private timers: Record<string, (() => void) | undefined> = {};
  /** e2ee: frames wait here for their messages to be decrypted, in order */
  private inq: Promise<unknown> = Promise.resolve();

  constructor(opts: ClientOptions) {
    super(opts);
    this.WS = opts.WebSocket || (globalThis as any).WebSocket;
    const self = this;
    if (opts.e2ee)
      opts.e2ee.attach({
        request: (m, p, b) => this.request(m, p, b),
        storage: this.store,
        get session() {
          return self.session;
        },
        emit: (t, e) => this.emit(t, e),
        log: (l, m, f) => this.log(l, m, f),
        now: this.o.now,
        conversation: (id) => this.conversation(id),
        conversations: () => this.conversations(),
        pendingKey: (cmid) => {
          const p = [...this.outq, ...this.failq].find((q) => q.e.clientMsgId === cmid && q.e.env);
          return p && p.e.env!.k;
        },
        upload: (c, d, o) => upload(this, c, d, o),
        mediaUrl: (id, v) => this.mediaUrl(id, v),
        fetchBytes: async (url) => {
          const r: any = await (opts.fetch || (globalThis as any).fetch)(url, { method: "GET", headers: {} });
          if (r.status !== 200) throw new ParleyError(r.status === 404 ? "not_found" : "network", "download: HTTP " + r.status);
          return new Uint8Array(await r.arrayBuffer());
        },
      });
  }

  private get uid(): string {
    return this.tok ? this.tok.userId : "";
  }
  private key(k: string) {
    return this.uid + "/" + k;
  }

  // ---- timers: one of each name at a time

  private timer(name: string, ms: number | null, fn?: () => void) {
    const c = this.timers[name];
    if (c) c();
    delete this.timers[name];
    if (ms !== null && fn)
      this.timers[name] = later(ms, () => {
        delete this.timers[name];
        fn();
      }, this.o.now);
  }

  // ---- storage

  private write(fn: () => Promise<unknown>) {
    this.writes = this.writes.then(fn).catch((e) => this.log("warn", "storage write failed", { error: String(e) }));
    return this.writes;
  }

  /** save queues a conversation's state for writing (coalesced per tick). */
  private save(id: string) {
    this.saveQ.add(id);
    if (!this.saveTimer) {
      this.saveTimer = true;
      Promise.resolve().then(() => this.flushSaves());
    }
  }

  private flushSaves() {
    this.saveTimer = false;
    for (const id of this.saveQ) {
      const c = this.convs.get(id);
      const k = this.key("conv/" + id);
      if (c && c.s) {
        const v = { s: c.s, known: c.known, heldUpto: c.heldUpto, reported: c.reported, counted: c.counted };
        this.write(() => this.store.set(k, v));
      }
    }
    this.saveQ.clear();
  }

  protected override async loadUser(): Promise<void> {
    // The same user again (restore twice, login after restore): keep the pending sends' objects.
    const had = new Map(this.outq.filter((p) => p.e.clientMsgId && this.loaded === this.uid).map((p) => [p.e.clientMsgId, p]));
    this.loaded = this.uid;
    if (this.o.e2ee) await this.o.e2ee.load();
    this.convs.clear();
    this.outq = [];
    this.position = (await this.store.get<string>(this.key("position"))) || "";
    for (const k of await this.store.keys(this.key("conv/"))) {
      const v = await this.store.get<{ s: ConversationState; known: boolean; heldUpto: number; reported: number; counted?: number }>(k);
      if (!v) continue;
      const c = this.conv(v.s.id);
      Object.assign(c, { s: v.s, known: v.known, heldUpto: v.heldUpto, reported: v.reported, counted: v.counted || 0 });
    }
    const entries: OutboxEntry[] = [];
    for (const k of await this.store.keys(this.key("outbox/"))) {
      const e = await this.store.get<OutboxEntry>(k);
      if (e) entries.push(e);
    }
    entries.sort((a, b) => a.queuedAt - b.queuedAt || a.n - b.n);
    for (const e of entries) {
      this.outN = Math.max(this.outN, e.n + 1);
      this.outq.push(had.get(e.clientMsgId) || this.pendingOf(e, true));
    }
    await this.loadFailed();
  }

  /** loadFailed restores the refused sends that the app has not discarded or retried. */
  private async loadFailed(): Promise<void> {
    const had = new Map(this.failq.map((p) => [p.e.clientMsgId, p]));
    this.failq = [];
    const fs: Array<OutboxEntry & { error: { code: string; message: string } }> = [];
    for (const k of await this.store.keys(this.key("failed/"))) {
      const e = await this.store.get<OutboxEntry & { error: { code: string; message: string } }>(k);
      if (e) fs.push(e);
    }
    fs.sort((a, b) => a.queuedAt - b.queuedAt || a.n - b.n);
    for (const f of fs) {
      const old = had.get(f.clientMsgId);
      if (old) {
        this.failq.push(old);
        continue;
      }
      const { error, ...e } = f;
      this.outN = Math.max(this.outN, e.n + 1);
      const p = this.pendingOf(e, true);
      p.done = true;
      p.failed = new ParleyError(error.code, error.message);
      p.reject(p.failed);
      this.failq.push(p);
    }
  }

  /** logout ends the session on the server and clears the stored state (not the device token). */
  async logout(): Promise<void> {
    if (!this.tok) return;
    const me = this.uid;
    await this.close(); // first: the server's 4003 for this logout is no session_ended
    try {
      await this.request("DELETE", "/v1/sessions/current");
    } catch (e) {
      this.log("warn", "logout", { error: String(e) });
    }
    this.tok = null;
    await this.writes;
    for (const k of [...(me ? await this.store.keys(me + "/") : []), "tokens"]) await this.store.delete(k);
    this.convs.clear();
    this.outq = [];
    this.failq = [];
    this.position = "";
  }

  protected override async endSession(error: ParleyError): Promise<void> {
    if (!this.tok) return;
    this.stop("stopped", error);
    await super.endSession(error);
  }

  // ---- lifecycle

  /** connect starts the connection loop; it resolves after the first ready. */
  connect(): Promise<void> {
    if (!this.tok) return Promise.reject(new ParleyError("unauthorized", "not logged in"));
    if (!this.WS) return Promise.reject(new ParleyError("invalid_request", "no WebSocket: pass options.WebSocket (Node: the ws package)"));
    if (this.ws && this.status !== "connecting") return Promise.resolve();
    const p = new Promise<void>((res, rej) => this.waiters.push({ res, rej }));
    if (!this.want) {
      this.want = true;
      this.quick = false;
      this.attempt = 0;
      this.open();
    }
    return p;
  }

  /** close stops the connection (close code 1000); the outbox stays in storage. */
  async close(): Promise<void> {
    this.stop("stopped", new ParleyError("closed", "closed"));
    await this.writes;
  }

  private stop(status: ConnectionStatus, err: ParleyError) {
    this.want = false;
    if (this.o.e2ee) this.o.e2ee.stop();
    this.gen++;
    this.timer("retry", null);
    const ws = this.ws;
    if (ws) {
      this.teardown();
      try {
        ws.close(1000);
      } catch {}
      this.emit("disconnected", { code: 1000, error: err });
    }
    this.setStatus(status);
    for (const w of this.waiters.splice(0)) w.rej(err);
  }

  /** setAppState is React Native's AppState hook. */
  setAppState(state: "active" | "background"): void {
    const was = this.appState;
    this.appState = state;
    if (state === "background") {
      this.timer("ping", null);
      this.timer("pong", null);
      return;
    }
    if (was === "background") {
      if (this.ws && this.status !== "connecting") {
        this.ping();
        if (this.synced) this.startSync();
      } else this.reconnectNow();
    }
  }

  /** setOnline is a hint from the app: true reconnects at once if waiting. */
  setOnline(online: boolean): void {
    if (online) this.reconnectNow();
  }

  private reconnectNow() {
    if (this.want && !this.ws && this.timers.retry) {
      this.timer("retry", null);
      this.open();
    }
  }

  private setStatus(s: ConnectionStatus) {
    if (s === this.status) return;
    const previous = this.status;
    this.status = s;
    this.emit("status", { status: s, previous });
  }

  private async open() {
    const gen = ++this.gen;
    this.setStatus("connecting");
    let ticket: string;
    try {
      ticket = (await this.request<{ ticket: string }>("POST", "/v1/ws/ticket")).ticket;
    } catch (e) {
      if (gen !== this.gen || !this.want) return;
      const err = asError(e);
      if (err.code === "unauthorized" || err.code === "account_suspended") return void this.endSession(err);
      this.emit("disconnected", { error: err });
      return this.retryIn(this.backoff(err.retryAfter));
    }
    if (gen !== this.gen || !this.want) return;
    const url = this.base.replace(/^http/, "ws") + "/v1/ws?ticket=" + encodeURIComponent(ticket);
    let ws: WebSocketLike;
    try {
      ws = new this.WS!(url) as WebSocketLike;
    } catch (e) {
      this.emit("disconnected", { error: asError(e) });
      return this.retryIn(this.backoff());
    }
    this.ws = ws;
    this.timer("ready", 30000, () => this.dead(ws, "no ready frame within 30 s"));
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let f: any;
      try {
        f = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data));
      } catch {
        return;
      }
      if (!f || typeof f !== "object") return;
      const e = this.o.e2ee;
      if (!e || f.type === "pong") return this.onFrame(f);
      // Frames keep their order while their messages are decrypted (async).
      this.inq = this.inq
        .then(() => e.open(f))
        .catch((err) => this.log("warn", "e2ee", { error: String(err) }))
        .then(() => void (this.ws === ws && this.onFrame(f)));
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.closed(ev.code);
    };
    ws.onerror = () => this.log("debug", "websocket error");
  }

  /** backoff is full jitter: random(0, min(max, min * 2^attempt)), at least retryAfter seconds. */
  private backoff(retryAfter?: number): number {
    const ceil = Math.min(this.o.maxMs, this.o.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.max(this.o.random() * ceil, (retryAfter || 0) * 1000);
  }

  private retryIn(ms: number) {
    if (!this.want) return;
    this.setStatus("offline");
    this.timer("retry", ms, () => this.open());
  }

  /** dead drops a socket that stopped answering, without waiting for its close. */
  private dead(ws: WebSocketLike, why: string) {
    if (this.ws !== ws) return;
    this.log("info", "connection dead", { why });
    try {
      ws.close(1000);
    } catch {}
    this.closed(undefined, new ParleyError("timeout", why));
  }

  private teardown() {
    const ws = this.ws;
    // No-op handlers, not null: `ws` throws an 'error' event that has no listener.
    if (ws) ws.onmessage = ws.onclose = ws.onerror = ws.onopen = () => {};
    this.ws = null;
    for (const n of ["ready", "ping", "pong", "renew", "flush", "pump", "resync"]) this.timer(n, null);
    this.reqs.clear();
    for (const p of this.inflight.values()) p.inFlight = false;
    this.inflight.clear();
    for (const c of this.convs.values()) c.filling = false;
    this.pending = this.hActive = 0;
    this.hq = [];
    this.synced = false;
  }

  private closed(code?: number, error?: ParleyError) {
    this.teardown();
    if (this.readyAt && this.o.now() - this.readyAt >= 60000) this.attempt = 0;
    this.readyAt = 0;
    this.emit("disconnected", { code, error: error || new ParleyError("closed", "closed with " + code) });
    if (!this.want) return this.setStatus("stopped");
    if (code === 4003) return void this.endSession(new ParleyError("unauthorized", "session ended"));
    if (code === 4004) {
      this.stop("stopped", new ParleyError("closed", "replaced by a newer connection of this device"));
      return;
    }
    if (code === 4001 && !this.quick) {
      this.quick = true;
      this.setStatus("offline");
      this.refresh().then(
        () => void (this.want && this.open()),
        (e) => this.retryIn(this.backoff(asError(e).retryAfter)),
      );
      return;
    }
    this.quick = false;
    this.retryIn(code === 1001 ? this.o.random() * 5000 : this.backoff());
  }

  private tx(f: Record<string, unknown>): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(f));
      return true;
    } catch (e) {
      this.dead(ws, "write failed: " + String(e));
      return false;
    }
  }

  private req(prefix: string, f: Record<string, unknown>, reply: (f: any) => void) {
    const id = prefix + ++this.reqN;
    this.reqs.set(id, reply);
    this.tx({ ...f, id });
  }

  // ---- frames

  private onFrame(f: any) {
    if (f.type === "ready") return this.onReady(f);
    const id: string | undefined = f.id;
    if (id) {
      const p = this.inflight.get(id);
      if (p) {
        this.inflight.delete(id);
        return this.onSendReply(p, f);
      }
      const h = this.reqs.get(id);
      if (h) {
        this.reqs.delete(id);
        return h(f);
      }
    }
    switch (f.type) {
      case "error": {
        const err = errorOf(f.error);
        const cid = id && /^[drt]:/.test(id) ? id.slice(2) : "";
        this.log("warn", "error frame", { id, code: err.code, message: err.message });
        // Not (or no longer) a member: drop it locally (protocol.md section 14).
        if (cid && err.code === "conversation_not_found") return this.removeConv(cid);
        const c = this.convs.get(cid);
        if (c && id!.startsWith("d:")) {
          c.reported = 0; // report again
          this.dirty.add(cid);
          this.timer("flush", 1000, () => this.flushDelivered());
        }
        return;
      }
      case "message":
        if (f.message) {
          this.onMessage(camel<Message>(f.message));
          this.pumpGaps();
        }
        return;
      case "receipt":
        return this.onReceipt(f);
      case "typing":
        return this.onTyping(f);
      case "presence": {
        const p: Presence = { state: f.state };
        if (f.last_seen) p.lastSeen = f.last_seen;
        this.presenceOf.set(f.user_id, p);
        return this.emit("presence", { userId: f.user_id, ...(p as any) });
      }
      case "conversation":
        return this.onConversation(f);
      default:
        if (this.o.e2ee) this.o.e2ee.frame(f); // key_request, device_list
    }
  }

  private onReady(f: any) {
    this.timer("ready", null);
    this.readyAt = this.o.now();
    this.quick = false;
    if (f.max_frame_bytes) this.maxFrame = f.max_frame_bytes;
    this.pingEvery = this.o.pingIntervalMs || Math.max(1, f.ping_interval || 25) * 1000;
    const reconnect = this.everReady;
    this.everReady = true;
    this.setStatus("syncing");
    this.emit("connected", { reconnect });
    for (const w of this.waiters.splice(0)) w.res();
    this.schedulePing();
    this.scheduleRenew(Date.parse(f.token_expires_at));
    if (this.o.e2ee) this.o.e2ee.connected();
    this.startSync();
  }

  // ---- liveness and renewal

  private schedulePing() {
    if (this.appState === "active") this.timer("ping", this.pingEvery, () => this.ping());
  }

  /** ping sends an app-level ping; a pong missing for pingTimeoutMs means the socket is dead. */
  private ping() {
    const ws = this.ws;
    if (!ws) return;
    this.req("p", { type: "ping" }, () => this.timer("pong", null));
    if (!this.timers.pong) this.timer("pong", this.o.pingTimeoutMs, () => this.dead(ws, "pong timeout"));
    this.schedulePing();
  }

  /** scheduleRenew renews in band at 80% of the token's life, and at least two ping intervals before it ends. */
  private scheduleRenew(expires: number) {
    if (!expires) return;
    this.sockExp = Math.max(this.sockExp, expires);
    const now = this.o.now();
    const at = Math.min(now + (expires - now) * 0.8, expires - 2 * this.pingEvery);
    // expires is the server's clock, now ours: a clock ahead of the server's puts `at` in the
    // past for good. At most one renewal per ping interval, whatever the clocks say.
    this.timer("renew", Math.max(0, at - now, this.authAt + this.pingEvery - now), () => this.renew());
  }

  private async renew() {
    const ws = this.ws;
    const again = () => this.ws === ws && this.timer("renew", 10000, () => this.renew());
    try {
      if (!this.tok || this.noGain || this.tok.accessExpiresAt <= this.sockExp + 1000) await this.refresh();
    } catch (e) {
      this.log("warn", "token renewal", { error: String(e) });
      return again();
    }
    if (this.ws !== ws || !this.tok) return;
    this.req("a", { type: "auth", access_token: this.tok.accessToken }, (f) => {
      if (f.type !== "authenticated") return again();
      const exp = Date.parse(f.token_expires_at);
      this.noGain = !(exp > this.sockExp); // the token we hold would not extend it: refresh first next time
      this.authAt = this.o.now();
      this.scheduleRenew(exp);
    });
  }

  // ---- sync (section 7, steps 4 and 5)

  private startSync() {
    this.synced = this.announced = false;
    this.fullSeen = null;
    if (this.status === "online") this.setStatus("syncing");
    this.syncPage();
  }

  private syncPage() {
    this.req("y", { type: "sync", position: this.position, limit: this.o.syncLimit }, (f) => this.onSync(f));
  }

  private onSync(f: any) {
    if (f.type === "error") {
      const err = errorOf(f.error);
      if (err.code === "invalid_request" && this.position) {
        this.log("warn", "sync position refused; starting over", { message: err.message });
        this.position = "";
        this.fullSeen = null;
        return this.syncPage();
      }
      const ws = this.ws;
      if (ws && err.code === "rate_limited")
        return this.timer("resync", (err.retryAfter || 1) * 1000, () => void (this.ws === ws && this.syncPage()));
      if (ws) this.dead(ws, "sync failed: " + err.code);
      return;
    }
    if (f.full_state && !this.fullSeen) this.fullSeen = new Set();
    for (const e of f.conversations || []) {
      const id: string = e.conversation.id;
      if (e.removed) {
        this.removeConv(id);
        continue;
      }
      if (this.fullSeen) this.fullSeen.add(id);
      const c = this.conv(id);
      const msgs = (e.messages || []).map((m: unknown) => camel<Message>(m));
      this.applyConv(c, e.conversation, e);
      if (!c.known) {
        let base: number = e.conversation.last_seq || 0;
        for (const m of msgs) base = Math.min(base, m.seq - 1);
        for (const s of c.ahead.keys()) base = Math.min(base, s - 1);
        c.known = true;
        c.heldUpto = base;
      } else if (e.more_messages && msgs.length) this.reread(id, c, Math.min(msgs[0].seq, c.heldUpto + 1));
      for (const m of msgs) this.onMessage(m);
      this.drain(c);
      // A delivered report the server does not have (sent on a connection that died before it
      // arrived) goes again after the sync.
      const me = e.conversation.me || (e.conversation.members || []).find((x: any) => x.user_id === this.uid);
      const got: number = me ? me.delivered_seq || 0 : Infinity;
      if (c.reported > got && c.heldUpto > got) {
        c.reported = got;
        this.dirty.add(id);
      }
      c.s!.unreadCount = e.unread_count || 0;
      this.save(id);
      this.emit("conversation", { conversation: c.s!, action: "synced" });
    }
    // The page is applied: its state is written first, then the position.
    this.flushSaves();
    const pos: string = f.position || "";
    this.position = pos;
    const k = this.key("position");
    this.write(() => this.store.set(k, pos));
    if (f.has_more) return this.syncPage();
    if (this.fullSeen) {
      for (const id of [...this.convs.keys()]) if (!this.fullSeen.has(id)) this.removeConv(id);
      this.fullSeen = null;
    }
    this.synced = true;
    this.pumpGaps();
    this.maybeSynced();
  }

  /**
   * reread re-reads a gappy conversation's held messages below `before`
   * (history before, paging back to the oldest held) and merges them; held
   * seqs in a covered range that did not come are gone.
   */
  private reread(id: string, c: Conv, before: number) {
    const floor = least(c.msgs.keys());
    if (!(floor < before)) return;
    this.hreq({ type: "history", conversation_id: id, before, limit: HISTORY_LIMIT }, (f) => {
      if (f.type === "error") return this.historyFailed(id, f);
      const got: Message[] = (f.messages || []).map((m: unknown) => camel<Message>(m));
      const more = got.length > 0 && (got.length >= HISTORY_LIMIT || f.truncated);
      const lo = more ? got[0]!.seq : 0;
      const seen = new Set(got.map((m) => m.seq));
      for (const s of [...c.msgs.keys()]) if (s >= lo && s < before && s <= c.heldUpto && !seen.has(s)) c.msgs.delete(s);
      for (const m of got) this.onMessage(m);
      if (more && lo > floor) this.reread(id, c, lo);
      this.maybeSynced();
    });
  }

  /**
   * hreq sends a history request of the sync pass: at most HISTORY_PARALLEL
   * in flight (the rest wait their turn), and rate_limited, unavailable or
   * internal retried after retry_after (at least 1 s). pending counts them
   * until reply runs, so `synced` waits for every one.
   */
  private hreq(frame: Record<string, unknown>, reply: (f: any) => void) {
    this.pending++;
    const ws = this.ws;
    const run = () => {
      if (this.ws !== ws) return;
      this.hActive++;
      this.req("h", frame, (f) => {
        this.hActive--;
        const next = this.hq.shift();
        if (next) next();
        const err = f.type === "error" && errorOf(f.error);
        if (err && RETRY.includes(err.code)) return void later(Math.max(1, err.retryAfter || 0) * 1000, run, this.o.now);
        this.pending--;
        reply(f);
      });
    };
    if (this.hActive < HISTORY_PARALLEL) run();
    else this.hq.push(run);
  }

  private historyFailed(id: string, f: any) {
    const err = errorOf(f.error);
    if (err.code === "conversation_not_found") this.removeConv(id);
    else this.log("warn", "history", { conversationId: id, code: err.code });
    this.maybeSynced();
  }

  /** backfill reads history after heldUpto until the messages held ahead connect (section 7 step 5). */
  private backfill(id: string, c: Conv) {
    if (!c.known) {
      c.known = true;
      c.heldUpto = least(c.ahead.keys()) - 1;
      return this.drain(c);
    }
    c.filling = true;
    this.hreq({ type: "history", conversation_id: id, after: c.heldUpto, limit: HISTORY_LIMIT }, (f) => {
      c.filling = false;
      if (f.type === "error") return this.historyFailed(id, f);
      const got: Message[] = (f.messages || []).map((m: unknown) => camel<Message>(m));
      for (const m of got) {
        if (m.seq - 1 > c.heldUpto && !c.msgs.has(m.seq)) {
          c.heldUpto = m.seq - 1; // the seqs skipped are gone
          this.drain(c); // hands over what waits ahead from here (onMessage only merges a copy held ahead)
        }
        this.onMessage(m);
      }
      if (c.ahead.size && got.length < HISTORY_LIMIT && !f.truncated) {
        const lowest = least(c.ahead.keys());
        if (lowest - 1 > c.heldUpto) c.heldUpto = lowest - 1;
        this.drain(c);
      }
      this.save(id);
      if (c.ahead.size) this.backfill(id, c);
      this.maybeSynced();
    });
  }

  private pumpGaps() {
    if (!this.synced) return;
    for (const [id, c] of this.convs) if (c.ahead.size && !c.filling) this.backfill(id, c);
  }

  private maybeSynced() {
    if (!this.synced || this.pending > 0 || !this.ws) return;
    for (const c of this.convs.values()) if (c.filling) return;
    if (!this.announced) {
      this.announced = true;
      this.flushDelivered(); // always after a sync: heals reports lost with a crash
      this.flushReads();
      this.setStatus("online");
      this.emit("synced", {});
    }
    this.pump();
  }

  // ---- messages

  private conv(id: string): Conv {
    let c = this.convs.get(id);
    if (!c) this.convs.set(id, (c = { known: false, heldUpto: 0, reported: 0, msgs: new Map(), ahead: new Map(), filling: false, counted: 0 }));
    return c;
  }

  /** onMessage applies one copy of a message: dedupe by seq, merge rule, in-order delivery. */
  private onMessage(m: Message) {
    const c = this.conv(m.conversationId);
    // A typer's message ends their typing, whether or not their stop came.
    const typers = this.typers.get(m.conversationId);
    if (typers && typers.delete(m.senderId)) {
      this.emit("typing", { conversationId: m.conversationId, userId: m.senderId, state: "stop" });
    }
    const held = c.msgs.get(m.seq);
    if (held) {
      const w = merge(held, m);
      if (w) {
        c.msgs.set(m.seq, w);
        if (c.s && c.s.lastMessage && c.s.lastMessage.seq === m.seq) c.s.lastMessage = w;
        this.emit("message_changed", { message: w });
      }
      return;
    }
    if (c.known && m.seq <= c.heldUpto) {
      // Not held although at or below heldUpto: older than what this client holds.
      if (c.msgs.size && m.seq > least(c.msgs.keys())) c.msgs.set(m.seq, m);
      else if (m.editedAt || m.deleted) this.emit("message_changed", { message: m });
      return;
    }
    const a = c.ahead.get(m.seq);
    if (a) {
      const w = merge(a, m);
      if (w) c.ahead.set(m.seq, w);
      return;
    }
    if (!c.known) {
      if (!this.synced) return void c.ahead.set(m.seq, m);
      c.known = true;
      c.heldUpto = m.seq - 1;
      if (!c.s) this.fetchConv(m.conversationId);
    }
    if (m.seq !== c.heldUpto + 1) return void c.ahead.set(m.seq, m);
    this.deliver(c, m);
    this.drain(c);
  }

  private drain(c: Conv) {
    for (let m; (m = c.ahead.get(c.heldUpto + 1)); ) {
      c.ahead.delete(m.seq);
      this.deliver(c, m);
    }
    for (const s of c.ahead.keys()) if (s <= c.heldUpto) c.ahead.delete(s);
  }

  private deliver(c: Conv, m: Message) {
    c.msgs.set(m.seq, m);
    c.heldUpto = m.seq;
    const s = c.s;
    if (s) {
      s.lastSeq = Math.max(s.lastSeq, m.seq);
      if (!s.lastMessage || m.seq >= s.lastMessage.seq) s.lastMessage = m;
      // Only messages the server's count did not include (a backfill's did).
      if (m.seq > c.counted) {
        c.counted = m.seq;
        if (m.senderId !== this.uid && !m.deleted && m.seq > s.readSeq) s.unreadCount++;
      }
    }
    if (m.senderId === this.uid) {
      const p = this.outq.find((q) => q.e.clientMsgId === m.clientMsgId && q.e.conversationId === m.conversationId);
      if (p) this.finish(p, m);
    }
    this.dirty.add(m.conversationId);
    if (this.synced && !this.timers.flush) this.timer("flush", this.o.deliveredDelayMs, () => this.flushDelivered());
    this.save(m.conversationId);
    this.emit("message", { message: m });
    this.notify(m.conversationId);
  }

  /** flushDelivered reports held_upto of every conversation that received messages. */
  private flushDelivered() {
    this.timer("flush", null);
    if (!this.ws || !this.synced) return;
    for (const id of this.dirty) {
      const c = this.convs.get(id);
      if (c && c.heldUpto > c.reported) {
        if (!this.tx({ type: "delivered", id: "d:" + id, conversation_id: id, seq: c.heldUpto })) return;
        c.reported = c.heldUpto;
        this.save(id);
      }
      this.dirty.delete(id);
    }
  }

  private async fetchConv(id: string) {
    try {
      const r = await this.request<{ conversation: any }>("GET", "/v1/conversations/" + encodeURIComponent(id));
      if (this.o.e2ee) await this.o.e2ee.open(r);
      const c = this.convs.get(id);
      if (!c) return;
      this.applyConv(c, r.conversation, r.conversation);
      this.save(id);
      this.emit("conversation", { conversation: c.s!, action: "updated" });
    } catch (e) {
      this.log("warn", "fetching a conversation", { id, error: String(e) });
    }
  }

  /**
   * applyConv stores a wire conversation; watermarks never go down. view has read_seq etc. when known.
   * A paged conversation (a big group) has no members but me (or, in a conversation frame, the
   * changed members in changed) and, from sync and REST, the receipts summary.
   */
  private applyConv(c: Conv, w: any, view?: any, changed?: any[]): ConversationState {
    const prev = c.s;
    const old = new Map((prev ? prev.members : []).map((m) => [m.userId, m]));
    if (prev && prev.me) old.set(prev.me.userId, prev.me);
    const keep = (m: Member) => {
      const o = old.get(m.userId);
      if (o) {
        m.readSeq = Math.max(m.readSeq, o.readSeq);
        m.deliveredSeq = Math.max(m.deliveredSeq, o.deliveredSeq);
      }
      return m;
    };
    const paged = !!w.members_paged;
    const members: Member[] = paged ? [] : (w.members || []).map((x: unknown) => keep(camel<Member>(x)));
    let mine: Member | undefined;
    if (!paged) mine = members.find((m) => m.userId === this.uid);
    else {
      const wire = w.me || (changed || []).find((x: any) => x.user_id === this.uid);
      mine = wire ? keep(camel<Member>(wire)) : old.get(this.uid);
    }
    const s: ConversationState = {
      id: w.id,
      kind: w.kind,
      title: w.title || "",
      lastSeq: Math.max(prev ? prev.lastSeq : 0, w.last_seq || 0),
      members,
      memberCount: w.member_count != null ? w.member_count : members.length,
      readSeq: Math.max(prev ? prev.readSeq : 0, view && view.read_seq != null ? view.read_seq : mine ? mine.readSeq : 0),
      unreadCount: view && view.unread_count != null ? view.unread_count : prev ? prev.unreadCount : 0,
      createdAt: w.created_at,
    };
    if (paged) {
      s.membersPaged = true;
      if (mine) s.me = { ...mine };
      const r = w.receipts ? camel<ReceiptsSummary>(w.receipts) : prev && prev.receipts;
      if (r) s.receipts = r;
    }
    if (w.e2ee || (prev && prev.e2ee)) s.e2ee = true;
    if (view && view.unread_count != null) c.counted = Math.max(c.counted, w.last_seq || 0);
    const muted = view ? view.muted_until : prev && prev.mutedUntil;
    if (muted) s.mutedUntil = muted;
    const last = (prev && prev.lastMessage) || (view && view.last_message && camel<Message>(view.last_message));
    if (last) s.lastMessage = last;
    c.s = s;
    this.notify(w.id);
    return s;
  }

  private removeConv(id: string) {
    const c = this.convs.get(id);
    this.convs.delete(id);
    this.subs.delete(id);
    this.typers.delete(id);
    const k = this.key("conv/" + id);
    this.write(() => this.store.delete(k));
    if (c && c.s) this.emit("conversation_removed", { conversationId: id });
  }

  private onConversation(f: any) {
    const w = f.conversation;
    if (!w || !w.id) return;
    const id: string = w.id;
    // A big group's created frame names no one: every member is new.
    const everyone = f.action === "created" && w.members_paged && !f.user_ids;
    const aboutMe = everyone || (f.user_ids || []).includes(this.uid);
    if (f.action === "deleted" || (f.action === "member_removed" && aboutMe)) return this.removeConv(id);
    const c = this.conv(id);
    let changed: any[] | undefined = f.members;
    if (everyone && !(c.s && c.s.me)) {
      // My entry in a new big group: as the protocol says it starts.
      const role = f.by_user_id === this.uid ? "owner" : "member";
      changed = [{ user_id: this.uid, role, read_seq: 0, delivered_seq: 0, joined_at: w.created_at }];
    }
    if ((f.action === "created" || f.action === "member_added") && aboutMe) {
      if (this.fullSeen) this.fullSeen.add(id); // joined during a full-state pass: keep it
      if (!c.known) {
        c.known = true;
        c.heldUpto = w.last_seq || 0;
        this.drain(c);
      }
    }
    this.applyConv(c, w, undefined, changed);
    this.save(id);
    this.emit("conversation", { conversation: c.s!, action: f.action });
  }

  private onReceipt(f: any) {
    const id: string = f.conversation_id;
    const c = this.convs.get(id);
    const s = c && c.s;
    if (s) {
      const m = s.members.find((x) => x.userId === f.user_id) || (s.me && s.me.userId === f.user_id ? s.me : undefined);
      if (m) {
        if (f.kind === "read") m.readSeq = Math.max(m.readSeq, f.seq);
        else m.deliveredSeq = Math.max(m.deliveredSeq, f.seq);
      }
      if (f.kind === "read" && f.user_id === this.uid) this.setRead(c!, f.seq);
      this.save(id);
      this.notify(id);
    }
    const e: any = { conversationId: id, userId: f.user_id, kind: f.kind, seq: f.seq };
    if (f.device_id) e.deviceId = f.device_id;
    this.emit("receipt", e);
  }

  /** setRead raises the own read watermark and recounts unread from the held messages. */
  private setRead(c: Conv, seq: number) {
    const s = c.s!;
    if (seq <= s.readSeq && s.unreadCount === 0) return;
    s.readSeq = Math.max(s.readSeq, seq);
    let n = 0;
    for (const m of c.msgs.values()) if (m.seq > s.readSeq && m.senderId !== this.uid && !m.deleted) n++;
    s.unreadCount = s.readSeq >= s.lastSeq ? 0 : Math.min(s.unreadCount, n);
  }

  private onTyping(f: any) {
    const id: string = f.conversation_id;
    let t = this.typers.get(id);
    if (!t) this.typers.set(id, (t = new Map()));
    if (f.state === "start") {
      const ms = (f.expires_in || 6) * 1000;
      t.set(f.user_id, this.o.now() + ms);
      this.timer("typing:" + id + ":" + f.user_id, ms, () => {
        const u = this.typers.get(id);
        if (u && u.has(f.user_id) && u.get(f.user_id)! <= this.o.now()) {
          u.delete(f.user_id);
          this.emit("typing", { conversationId: id, userId: f.user_id, state: "stop" });
        }
      });
    } else t.delete(f.user_id);
    this.emit("typing", { conversationId: id, userId: f.user_id, state: f.state });
  }

  // ---- outbox (section 7 step 6)

  private pendingOf(e: OutboxEntry, saved: boolean): Pending {
    let resolve!: (m: Message) => void, reject!: (e: ParleyError) => void;
    const acked = new Promise<Message>((res, rej) => ((resolve = res), (reject = rej)));
    acked.catch(() => {}); // a refusal also comes as send_failed: never an unhandled rejection
    const p: Pending = { e, saved, inFlight: false, retryAt: 0, done: false, resolve, reject } as Pending;
    const get = (): MessageStatus => {
      if (p.failed) return { ...this.counts(e.conversationId, 0, this.uid), state: "failed", error: p.failed };
      if (p.acked) return this.statusOf(e.conversationId, p.acked.seq, this.uid);
      return { ...this.counts(e.conversationId, 0, this.uid), state: "sending" };
    };
    p.view = { clientMsgId: e.clientMsgId, conversationId: e.conversationId, type: e.type, body: e.body, acked, status: this.observe(e.conversationId, get) };
    return p;
  }

  /**
   * send queues a message: its clientMsgId is chosen now and the outbox
   * entry is written to storage before the first attempt. It is sent once
   * connected and synced, and resent with the same clientMsgId until acked
   * or refused.
   */
  send(conversationId: string, body: string, opts: SendOptions = {}): OutgoingMessage {
    if (!this.tok) throw new ParleyError("unauthorized", "not logged in");
    const e: OutboxEntry = {
      clientMsgId: opts.clientMsgId || uuid(this.o.random),
      conversationId,
      type: opts.type || "text",
      body,
      ttlSeconds: opts.ttlSeconds || 0,
      attachments: opts.attachments && opts.attachments.length ? opts.attachments.map((a) => (typeof a === "string" ? a : a.mediaId)) : undefined,
      queuedAt: this.o.now(),
      n: this.outN++,
    };
    const c = this.conversation(conversationId);
    if (c && c.e2ee) {
      if (!this.o.e2ee) throw new ParleyError("invalid_request", "an e2ee conversation needs the e2ee module (options.e2ee)");
      e.env = this.o.e2ee.seal(conversationId, e.clientMsgId, e.type, body, opts.attachments);
      if (e.env.media) e.attachments = e.env.media;
    }
    const p = this.pendingOf(e, false);
    this.outq.push(p);
    const k = this.key("outbox/" + e.clientMsgId);
    this.write(() => this.store.set(k, e)).then(() => {
      p.saved = true;
      this.pump();
    });
    if (this.typingSent.has(conversationId)) this.typing(conversationId, "stop");
    this.notify(conversationId);
    return p.view;
  }

  /** upload sends a file with tus (see media.ts) and returns its attachment, for send's attachments. */
  upload(conversationId: string, data: Blob | Uint8Array | ArrayBuffer, opts?: UploadOptions): Promise<Attachment> {
    const e = this.o.e2ee;
    const c = this.conversation(conversationId);
    if (e && c && c.e2ee)
      return (data instanceof Uint8Array ? Promise.resolve(data) : new Blob([data as ArrayBuffer]).arrayBuffer().then((b) => new Uint8Array(b))).then((d) =>
        e.upload(conversationId, d, opts),
      );
    return upload(this, conversationId, data, opts);
  }

  /** mediaUrl is a signed link (no token needed) to a media or its thumbnail, cached until it expires. */
  mediaUrl(mediaId: string, variant: "original" | "thumbnail" = "original"): Promise<string> {
    return mediaUrl(this, mediaId, variant);
  }

  /** outbox is every message not yet acked (restored after a restart too). */
  outbox(): OutgoingMessage[] {
    return this.outq.map((p) => p.view);
  }

  private pump() {
    if (!this.ws || !this.synced || this.pending > 0) return;
    const now = this.o.now();
    let next = Infinity;
    const held = new Set<string>(); // conversations waiting for a refused send's retry
    for (const p of [...this.outq]) {
      if (this.inflight.size >= this.o.maxInFlight) break;
      if (p.done || p.failed || held.has(p.e.conversationId)) continue;
      // Refused with a retryable error: the later sends of its conversation wait until it is
      // acked (or refused for good) so they do not commit before it. Those already in flight
      // when the refusal came may still commit first.
      if (p.retryAt > 0) held.add(p.e.conversationId);
      if (p.inFlight || !p.saved) continue;
      if (now < p.retryAt) {
        next = Math.min(next, p.retryAt);
        continue;
      }
      const id = "s" + ++this.reqN;
      const f: Record<string, unknown> = {
        type: "send",
        id,
        conversation_id: p.e.conversationId,
        client_msg_id: p.e.clientMsgId,
        message_type: p.e.type,
        body: p.e.body,
      };
      if (p.e.ttlSeconds) f.ttl_seconds = p.e.ttlSeconds;
      if (p.e.attachments) f.attachments = p.e.attachments.map((media_id) => ({ media_id }));
      const c = this.conversation(p.e.conversationId);
      if (c && c.e2ee && !p.e.env && this.o.e2ee) {
        // Queued before the conversation was known to be e2ee: sealed now, stored, then sent.
        try {
          p.e.env = this.o.e2ee.seal(p.e.conversationId, p.e.clientMsgId, p.e.type, p.e.body, p.e.attachments);
          if (p.e.env.media) p.e.attachments = p.e.env.media;
        } catch (e) {
          this.fail(p, asError(e));
          continue;
        }
        p.saved = false;
        const k = this.key("outbox/" + p.e.clientMsgId);
        this.write(() => this.store.set(k, p.e)).then(() => {
          p.saved = true;
          this.pump();
        });
        held.add(p.e.conversationId);
        continue;
      }
      const env = p.e.env;
      if (env) {
        if (!p.keys) {
          // Sealing K to every device is async: later sends of this conversation wait for it.
          held.add(p.e.conversationId);
          if (!p.prep) this.prepKeys(p, env);
          continue;
        }
        delete f.body;
        f.message_type = "encrypted";
        f.envelope = { v: 1, suite: env.suite, ciphertext: env.ciphertext, signature: env.signature, keys: p.keys };
      }
      if (utf8Length(JSON.stringify(f)) > this.maxFrame) {
        if (env) this.restSend(p, f);
        else this.fail(p, new ParleyError("payload_too_large", "the message does not fit in one frame"));
        continue;
      }
      p.inFlight = true;
      this.inflight.set(id, p);
      if (!this.tx(f)) return;
    }
    if (next < Infinity) this.timer("pump", next - now, () => this.pump());
  }

  /** prepKeys seals an e2ee send's K to the conversation's devices (after a device_mismatch: refetched first). */
  private prepKeys(p: Pending, env: SealedContent) {
    p.prep = true;
    this.o.e2ee!.keys(p.e.conversationId, p.e.clientMsgId, env, p.mismatch).then(
      (k) => {
        p.keys = k;
        p.mismatch = undefined;
      },
      (e) => {
        const err = asError(e);
        if (NETWORK.includes(err.code)) p.retryAt = this.o.now() + Math.max(1000, (err.retryAfter || 0) * 1000);
        else this.fail(p, err);
      },
    ).then(() => {
      p.prep = false;
      this.pump();
    });
  }

  /** restSend sends an e2ee message too large for a frame with POST .../messages (same client_msg_id). */
  private restSend(p: Pending, f: Record<string, unknown>) {
    p.inFlight = true;
    const { type, id, conversation_id, message_type, ...body } = f;
    this.request<{ message: any }>("POST", `/v1/conversations/${encodeURIComponent(p.e.conversationId)}/messages`, { ...body, type: message_type })
      .then(
        async (r) => {
          await this.o.e2ee!.open(r);
          return { type: "ack", message: r.message };
        },
        (e) => {
          const err = asError(e);
          return { type: "error", error: { ...err.data, code: NETWORK.includes(err.code) ? "unavailable" : err.code, message: err.message, retry_after: err.retryAfter } };
        },
      )
      .then((r) => this.onSendReply(p, r));
  }

  private onSendReply(p: Pending, f: any) {
    p.inFlight = false;
    if (f.type === "ack" && f.message) {
      const m = camel<Message>(f.message);
      this.finish(p, m);
      this.onMessage(m);
    } else if (f.type === "error") {
      const err = errorOf(f.error);
      if (err.code === "device_mismatch" && p.e.env && (p.mismatches = (p.mismatches || 0) + 1) <= 3) {
        // Refetch the lists and seal again; the same client_msg_id, K and ciphertext.
        p.keys = undefined;
        p.mismatch = f.error;
        p.retryAt = this.o.now();
      } else if (RETRY.includes(err.code)) p.retryAt = this.o.now() + Math.max(1000, (err.retryAfter || 0) * 1000);
      else {
        this.fail(p, err);
        if (err.code === "conversation_not_found") this.removeConv(p.e.conversationId);
      }
    }
    this.pump();
  }

  private settle(p: Pending) {
    p.done = true;
    if (this.o.e2ee) this.o.e2ee.done(p.e.clientMsgId);
    this.outq = this.outq.filter((q) => q !== p);
    const k = this.key("outbox/" + p.e.clientMsgId);
    this.write(() => this.store.delete(k));
  }

  private finish(p: Pending, m: Message) {
    if (p.done) return;
    p.acked = m;
    this.settle(p);
    p.resolve(m);
    this.notify(m.conversationId);
  }

  private fail(p: Pending, error: ParleyError) {
    if (p.done) return;
    p.failed = error;
    this.settle(p);
    // Kept visible as failed until the app discards or retries it.
    this.failq.push(p);
    const fk = this.key("failed/" + p.e.clientMsgId);
    const fv = { ...p.e, error: { code: error.code, message: error.message } };
    this.write(() => this.store.set(fk, fv));
    p.reject(error);
    this.emit("send_failed", { clientMsgId: p.e.clientMsgId, conversationId: p.e.conversationId, error });
    this.notify(p.e.conversationId);
  }

  /** failed lists the refused sends not yet discarded or retried (restored after a restart too). */
  failed(conversationId?: string): OutgoingMessage[] {
    return this.failq.filter((p) => !conversationId || p.e.conversationId === conversationId).map((p) => p.view);
  }

  /** discard forgets a refused send (it leaves messages() and storage). */
  discard(clientMsgId: string): void {
    const p = this.takeFailed(clientMsgId);
    if (p) this.notify(p.e.conversationId);
  }

  /**
   * retry queues a refused send again with the same body, type and TTL under
   * a NEW clientMsgId (the server refused the old one for good); the failed
   * entry is removed. Undefined when no failed send has that id.
   */
  retry(clientMsgId: string): OutgoingMessage | undefined {
    if (!this.tok) throw new ParleyError("unauthorized", "not logged in");
    const p = this.failq.find((q) => q.e.clientMsgId === clientMsgId);
    if (!p) return undefined;
    const out = this.send(p.e.conversationId, p.e.body, { type: p.e.type as SendOptions["type"], ttlSeconds: p.e.ttlSeconds || undefined });
    this.takeFailed(clientMsgId);
    return out;
  }

  private takeFailed(clientMsgId: string): Pending | undefined {
    const p = this.failq.find((q) => q.e.clientMsgId === clientMsgId);
    if (!p) return undefined;
    this.failq = this.failq.filter((q) => q !== p);
    const k = this.key("failed/" + clientMsgId);
    this.write(() => this.store.delete(k));
    return p;
  }

  // ---- status of messages

  private counts(cid: string, seq: number, sender: string) {
    const s = this.convs.get(cid)?.s;
    if (s && s.membersPaged) return pagedCounts(s, seq, sender, this.uid);
    const others = s ? s.members.filter((m) => m.userId !== sender) : [];
    let deliveredCount = 0,
      readCount = 0;
    if (seq > 0)
      for (const m of others) {
        if (m.readSeq >= seq) readCount++;
        if (m.readSeq >= seq || m.deliveredSeq >= seq) deliveredCount++;
      }
    return { deliveredCount, readCount, memberCount: others.length };
  }

  private statusOf(cid: string, seq: number, sender?: string): MessageStatus {
    const m = this.convs.get(cid)?.msgs.get(seq);
    const k = this.counts(cid, seq, (m && m.senderId) || sender || this.uid);
    const n = k.memberCount;
    return { ...k, state: n && k.readCount === n ? "read" : n && k.deliveredCount === n ? "delivered" : "sent" };
  }

  private observe(cid: string, get: () => MessageStatus): Observable<MessageStatus> {
    return {
      get,
      subscribe: (fn) => {
        let set = this.subs.get(cid);
        if (!set) this.subs.set(cid, (set = new Set()));
        const v = get();
        const sub: Sub = { get, fn, last: JSON.stringify(v) };
        set.add(sub);
        fn(v);
        return () => void this.subs.get(cid)?.delete(sub);
      },
    };
  }

  private notify(cid: string) {
    for (const sub of this.subs.get(cid) || []) {
      const v = sub.get();
      const j = JSON.stringify(v);
      if (j !== sub.last) {
        sub.last = j;
        sub.fn(v);
      }
    }
  }

  /** status$ is the status of any held message (own or others'). */
  status$(conversationId: string, seq: number): Observable<MessageStatus> {
    return this.observe(conversationId, () => this.statusOf(conversationId, seq));
  }

  // ---- local state

  /** conversations are sorted by last activity, newest first. */
  conversations(): ConversationState[] {
    const at = (s: ConversationState) => Date.parse((s.lastMessage && s.lastMessage.createdAt) || s.createdAt) || 0;
    return [...this.convs.values()].flatMap((c) => (c.s ? [c.s] : [])).sort((a, b) => at(b) - at(a));
  }

  conversation(id: string): ConversationState | undefined {
    return this.convs.get(id)?.s;
  }

  /** messages are the held messages (ascending seq, expired ones left out), then pending local sends. */
  messages(conversationId: string): MessageView[] {
    const c = this.convs.get(conversationId);
    const now = this.o.now();
    const held = c ? [...c.msgs.values()].filter((m) => !m.expiresAt || Date.parse(m.expiresAt) > now).sort((a, b) => a.seq - b.seq) : [];
    const out: MessageView[] = held.map((m) => ({ ...m, status: this.status$(conversationId, m.seq) }));
    const local = [...this.outq, ...this.failq].sort((a, b) => a.e.queuedAt - b.e.queuedAt || a.e.n - b.e.n);
    for (const p of local)
      if (p.e.conversationId === conversationId)
        out.push({
          id: "",
          conversationId,
          seq: 0,
          senderId: this.uid,
          senderDeviceId: this.tok ? this.tok.deviceId : "",
          clientMsgId: p.e.clientMsgId,
          type: p.e.type,
          body: p.e.body,
          createdAt: new Date(p.e.queuedAt).toISOString(),
          status: p.view.status,
        });
    return out;
  }

  /** loadOlder reads history before the oldest held message; it returns how many were added (0 at the start). */
  async loadOlder(conversationId: string, limit = 50): Promise<number> {
    const c = this.conv(conversationId);
    const before = c.msgs.size ? least(c.msgs.keys()) : c.known ? c.heldUpto + 1 : (c.s ? c.s.lastSeq : 0) + 1;
    if (before <= 1) return 0;
    const r = await this.history(conversationId, { before, limit });
    let n = 0;
    for (const m of r.messages)
      if (!c.msgs.has(m.seq) && m.seq < before) {
        c.msgs.set(m.seq, m);
        n++;
      }
    if (!c.known && r.messages.length) {
      c.known = true;
      c.heldUpto = before - 1;
    }
    return n;
  }

  /** markRead sends `read` up to seq (default: the newest held) and updates the unread count at once. */
  async markRead(conversationId: string, seq?: number): Promise<void> {
    const c = this.convs.get(conversationId);
    if (seq === undefined) seq = c && c.msgs.size ? -least([...c.msgs.keys()].map((x) => -x)) : c ? c.heldUpto : 0;
    if (c && c.s) {
      this.setRead(c, seq);
      const m = c.s.members.find((x) => x.userId === this.uid) || c.s.me;
      if (m) m.readSeq = Math.max(m.readSeq, seq);
      this.save(conversationId);
    }
    if (this.tx({ type: "read", id: "r:" + conversationId, conversation_id: conversationId, seq })) {
      this.unsentReads.delete(conversationId);
      return;
    }
    try {
      await this.request("POST", `/v1/conversations/${encodeURIComponent(conversationId)}/read`, { seq });
      if ((this.unsentReads.get(conversationId) ?? Infinity) <= seq) this.unsentReads.delete(conversationId);
    } catch (e) {
      if (!(e instanceof ParleyError) || !NETWORK.includes(e.code)) throw e;
      // Offline: kept, and sent after the next sync (like delivered).
      this.unsentReads.set(conversationId, Math.max(seq, this.unsentReads.get(conversationId) ?? 0));
    }
  }

  private flushReads() {
    for (const [id, seq] of this.unsentReads) {
      if (!this.convs.has(id)) this.unsentReads.delete(id);
      else if (this.tx({ type: "read", id: "r:" + id, conversation_id: id, seq })) this.unsentReads.delete(id);
      else return;
    }
  }

  /** typing: start is throttled to one per 3 s; stop is sent after a send by the SDK itself. */
  typing(conversationId: string, state: "start" | "stop"): void {
    const now = this.o.now();
    const last = this.typingSent.get(conversationId);
    if (state === "start") {
      if (last !== undefined && now - last < 3000) return;
      this.typingSent.set(conversationId, now);
    } else if (!this.typingSent.delete(conversationId)) return; // no start to stop
    this.typingTokens = Math.min(4, this.typingTokens + ((now - this.typingAt) / 1000) * 2);
    this.typingAt = now;
    if (this.typingTokens < 1) return;
    this.typingTokens--;
    this.tx({ type: "typing", id: "t:" + conversationId, conversation_id: conversationId, state });
  }

  /** typingUsers are the members typing now (a start lapses after its expires_in). */
  typingUsers(conversationId: string): string[] {
    const now = this.o.now();
    return [...(this.typers.get(conversationId) || [])].filter(([, until]) => until > now).map(([u]) => u);
  }

  presence(userId: string): Presence {
    return this.presenceOf.get(userId) || { state: "unknown" };
  }

  // ---- REST helpers that touch local state

  private async created(r: { conversation: any }): Promise<ConversationState> {
    if (this.o.e2ee) await this.o.e2ee.open(r);
    const c = this.conv(r.conversation.id);
    if (!c.known) {
      c.known = true;
      c.heldUpto = r.conversation.last_seq || 0;
    }
    const s = this.applyConv(c, r.conversation, c.s ? undefined : r.conversation);
    this.save(s.id);
    return s;
  }

  /** createDirect finds or creates the direct conversation with userId (with e2ee: the end-to-end encrypted one). */
  createDirect(userId: string, opts: { e2ee?: boolean } = {}): Promise<ConversationState> {
    return this.create({ kind: "direct", members: [userId] }, opts);
  }

  createGroup(title: string, memberIds: string[], opts: { e2ee?: boolean } = {}): Promise<ConversationState> {
    return this.create({ kind: "group", title, members: memberIds }, opts);
  }

  private create(body: Record<string, unknown>, opts: { e2ee?: boolean }): Promise<ConversationState> {
    if (opts.e2ee) body.e2ee = true;
    return this.request<{ conversation: any }>("POST", "/v1/conversations", body).then((r) => this.created(r));
  }

  /**
   * members reads a page of a conversation's members, by user id, after the user id `after`
   * (from the start if absent), at most `limit` (server default 200, at most 1,000). The way to
   * list a big group's members (membersPaged); works for every conversation.
   */
  async members(conversationId: string, q: { after?: string; limit?: number } = {}): Promise<MembersPage> {
    const qs = (["after", "limit"] as const)
      .filter((k) => q[k] !== undefined && q[k] !== "")
      .map((k) => k + "=" + encodeURIComponent(String(q[k])))
      .join("&");
    const r = await this.request<{ member_count: number; members: unknown[]; next?: string }>(
      "GET",
      `/v1/conversations/${encodeURIComponent(conversationId)}/members` + (qs ? "?" + qs : ""),
    );
    const page: MembersPage = { memberCount: r.member_count, members: (r.members || []).map((m) => camel<Member>(m)) };
    if (r.next) page.next = r.next;
    return page;
  }

  async addMember(conversationId: string, userId: string): Promise<void> {
    await this.request("POST", `/v1/conversations/${encodeURIComponent(conversationId)}/members`, { user_id: userId });
  }

  async removeMember(conversationId: string, userId: string): Promise<void> {
    await this.request("DELETE", `/v1/conversations/${encodeURIComponent(conversationId)}/members/${encodeURIComponent(userId)}`);
  }

  async history(conversationId: string, q: HistoryQuery = {}): Promise<{ messages: Message[]; truncated: boolean }> {
    const qs = (["before", "after", "limit"] as const)
      .filter((k) => q[k] !== undefined)
      .map((k) => k + "=" + q[k])
      .join("&");
    const r = await this.request<{ messages: unknown[]; truncated?: boolean }>(
      "GET",
      `/v1/conversations/${encodeURIComponent(conversationId)}/messages` + (qs ? "?" + qs : ""),
    );
    if (this.o.e2ee) await this.o.e2ee.open(r);
    return { messages: camel<Message[]>(r.messages || []), truncated: !!r.truncated };
  }

  /** registerPush registers this device for push: a Web Push subscription, an FCM token or an APNs token. */
  async registerPush(reg: PushRegistration): Promise<void> {
    let body: Record<string, unknown>;
    if (reg.kind === "webpush") body = { provider: "webpush", subscription: reg.subscription };
    else if (reg.kind === "fcm") body = { provider: "fcm", token: reg.token };
    else body = { provider: "apns", token: reg.token, topic: reg.topic, environment: reg.sandbox ? "sandbox" : "production" };
    await this.request("PUT", "/v1/devices/current/push", body);
  }

  async unregisterPush(): Promise<void> {
    await this.request("DELETE", "/v1/devices/current/push");
  }
}

/**
 * pagedCounts is "delivered to k of n, read by k of n" in a big group, from the receipts summary:
 * the summary counts every member, so the sender's own watermarks are taken out when the sender
 * is this user (known from me). Seqs outside the summary count 0: ask the server for the message
 * (GET /v1/conversations/{id}/messages/{seq}) for exact counts.
 */
function pagedCounts(s: ConversationState, seq: number, sender: string, uid: string) {
  const memberCount = Math.max(0, (s.memberCount || 0) - 1);
  const r = s.receipts;
  const i = r ? seq - r.fromSeq : -1;
  if (!r || seq < 1 || i < 0 || i >= r.delivered.length) return { deliveredCount: 0, readCount: 0, memberCount };
  let deliveredCount = r.delivered[i] || 0,
    readCount = (r.read && r.read[i]) || 0;
  const me = s.me;
  if (sender === uid && me) {
    if (me.readSeq >= seq || me.deliveredSeq >= seq) deliveredCount--;
    if (me.readSeq >= seq) readCount--;
  }
  return { deliveredCount: clamp(deliveredCount, memberCount), readCount: clamp(readCount, memberCount), memberCount };
}

function clamp(n: number, most: number) {
  return Math.max(0, Math.min(n, most));
}
