import type { ParleyError } from "./errors.js";
import type { Storage } from "./storage.js";
import type { UploadOptions } from "./media.js";

/** A user's public fields (REST `User`, camelCase). */
export interface User {
  id: string;
  handle: string;
  displayName: string;
  createdAt?: string;
  [field: string]: unknown;
}

/** The logged-in session. accessExpiresAt is milliseconds since the epoch. */
export interface Session {
  userId: string;
  deviceId: string;
  accessExpiresAt: number;
}

/** The server's message object (docs/protocol.md section 5), camelCase. */
export interface Message {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string;
  senderDeviceId: string;
  clientMsgId: string;
  type: string;
  body: string;
  createdAt: string;
  expiresAt?: string;
  editedAt?: string;
  deleted?: boolean;
  withheld?: boolean;
  /** media the message carries, in the order sent (protocol.md: the attachment object) */
  attachments?: Attachment[];
  /**
   * Set on a message of an e2ee conversation by the e2ee module: decrypted
   * (type, body and attachments are the plaintext content's), or
   * undecryptable with a reason (type stays "encrypted", body ""): show
   * "waiting for this message", never drop it.
   */
  e2ee?: E2EEState;
}

/**
 * Why a message is undecryptable (docs/design/e2ee.md, "Receiving"; the same
 * strings as the Go SDK's): no_key (none sealed to this device, or to a key
 * it no longer holds: a key request was sent unless the message is older
 * than this device or its user's membership), bad_ciphertext,
 * unknown_sender_device (not listed, or its identity key changed),
 * bad_signature (tampered), bad_content.
 */
export interface E2EEState {
  state: "decrypted" | "undecryptable";
  reason?: string;
}

export interface Attachment {
  mediaId: string;
  contentType?: string;
  size?: number;
  sha256?: string;
  filename?: string;
  width?: number;
  height?: number;
  durationMs?: number;
  /** e2ee: the thumbnail is a media of its own, with its own key */
  thumbnail?: { width: number; height: number; mediaId?: string; key?: string; sha256?: string; contentType?: string };
  blurhash?: string;
  encrypted?: boolean;
  /** e2ee: the file key (base64url); sha256 is then the encrypted blob's */
  key?: string;
}

export interface Member {
  userId: string;
  role: string;
  readSeq: number;
  deliveredSeq: number;
  joinedAt: string;
  request?: boolean;
}

/**
 * The receipts summary of a paged conversation (docs/protocol.md, "The receipts summary"):
 * entry i counts the members (the viewer included) who have, or have read, message fromSeq + i.
 */
export interface ReceiptsSummary {
  fromSeq: number;
  delivered: number[];
  read: number[];
}

/** One page of a conversation's members (ParleyClient.members). */
export interface MembersPage {
  memberCount: number;
  members: Member[];
  /** Present when more may follow: pass it as `after`. */
  next?: string;
}

export interface ConversationState {
  id: string;
  kind: "direct" | "group";
  title: string;
  lastSeq: number;
  /**
   * Every member; empty when membersPaged (a big group: read them with
   * ParleyClient.members, a page at a time).
   */
  members: Member[];
  /** How many members the conversation has (requests included). */
  memberCount: number;
  /** A big group: members is empty, me and receipts stand in for it. */
  membersPaged?: boolean;
  /** membersPaged only: this user's own member entry. */
  me?: Member;
  /** membersPaged only: delivered/read counts of the newest 50 seqs, as of the last sync or REST read. */
  receipts?: ReceiptsSummary;
  readSeq: number;
  unreadCount: number;
  mutedUntil?: string;
  /** end-to-end encrypted (set at creation, never turned off) */
  e2ee?: boolean;
  /** The newest held message. */
  lastMessage?: Message;
  createdAt: string;
}

/** A value that changes; subscribe calls fn at once with the current value. */
export interface Observable<T> {
  get(): T;
  subscribe(fn: (value: T) => void): () => void;
}

export interface MessageStatus {
  state: "sending" | "sent" | "delivered" | "read" | "failed";
  /** Members other than the sender with delivered_seq >= seq or read_seq >= seq. */
  deliveredCount: number;
  /** Members other than the sender with read_seq >= seq. */
  readCount: number;
  /** Members other than the sender. */
  memberCount: number;
  error?: ParleyError;
}

export type MessageView = Message & { status: Observable<MessageStatus> };

export interface OutgoingMessage {
  clientMsgId: string;
  conversationId: string;
  type: string;
  body: string;
  status: Observable<MessageStatus>;
  /** Resolves with the stored message on ack; rejects with ParleyError if refused for good. */
  acked: Promise<Message>;
}

export interface SendOptions {
  /** media ids (or the attachments) from upload() (up to 10); the body may then be empty */
  attachments?: (string | Attachment)[];
  type?: "text" | "image" | "video" | "file";
  ttlSeconds?: number;
  clientMsgId?: string;
}

export type ConnectionStatus = "offline" | "connecting" | "syncing" | "online" | "stopped";

export type PushRegistration =
  | { kind: "webpush"; subscription: { endpoint: string; keys?: Record<string, string>; [k: string]: unknown } }
  | { kind: "fcm"; token: string }
  | { kind: "apns"; token: string; topic?: string; sandbox?: boolean };

export interface Presence {
  state: "online" | "offline" | "unknown";
  lastSeen?: string;
}

/** The minimal WebSocket the SDK needs: browsers', React Native's and `ws`'s all fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
/**
 * Any WebSocket class: the browser's, React Native's, `ws`'s. Typed loosely
 * (their handler types differ); the SDK uses only what WebSocketLike lists.
 */
export type WebSocketConstructor = new (url: string) => any;

export interface FetchResponse {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}
export type FetchFn = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string | Uint8Array<ArrayBuffer>; signal?: AbortSignal },
) => Promise<FetchResponse>;

export type Logger = (level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export interface ClientOptions {
  /** Base URL, e.g. http://127.0.0.1:8080; ws(s):// is derived from it. */
  server: string;
  /** Default MemoryStorage. */
  storage?: Storage;
  /** Default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Default globalThis.fetch. */
  fetch?: FetchFn;
  /** A REST call not answered within this fails with ParleyError `timeout` (aborted where AbortController exists). Default 15000 ms. */
  requestTimeoutMs?: number;
  /** Reported at login: web | ios | android | cli. Default web. */
  platform?: string;
  deviceName?: string;
  /** Messages per conversation per sync page, 1-100. Default 50. */
  syncLimit?: number;
  /** Full jitter: random(0, min(maxMs, minMs * 2^attempt)). Default 500 / 30000 ms. */
  backoff?: { minMs?: number; maxMs?: number };
  /** A pong missing this long after a ping: the socket is dead. Default 10000 ms. */
  pingTimeoutMs?: number;
  /** Default: the server's ready.ping_interval. */
  pingIntervalMs?: number;
  /** Debounce of `delivered` reports during live traffic. Default 500 ms. */
  deliveredDelayMs?: number;
  /** Sends awaiting ack. Default 16. */
  maxInFlight?: number;
  now?: () => number;
  random?: () => number;
  logger?: Logger;
  /**
   * Runs token refreshes under a lock shared by every client instance that
   * shares this storage (e.g. browser tabs on one IndexedDB). Inside the
   * lock the client re-reads the stored tokens and adopts them when another
   * instance rotated them already, instead of presenting a used refresh token
   * (which the server treats as theft and ends the session). In a browser:
   * `lock: (name, fn) => navigator.locks.request(name, fn)`. Not needed with
   * one instance per storage (React Native, Node).
   */
  lock?: (name: string, fn: () => Promise<void>) => Promise<unknown>;
  /**
   * End-to-end encryption: `new E2EE()` from "@parley/client/e2ee" (a
   * separate module, so that apps without it do not carry its size).
   */
  e2ee?: E2EEPlugin;
}

/** A send's content sealed at send() time (kept in the outbox). */
export interface SealedContent {
  k: string;
  ciphertext: string;
  signature: string;
  suite: string;
  /** the media ids the server attaches: each attachment, then its thumbnail */
  media?: string[];
}

/** @internal What ParleyClient gives its e2ee module. */
export interface E2EEHost {
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
  readonly storage: Storage;
  readonly session: Session | null;
  emit<K extends EventType>(type: K, payload: ParleyEvents[K]): void;
  log: Logger;
  now(): number;
  conversation(id: string): ConversationState | undefined;
  conversations(): ConversationState[];
  /** the content key (base64url) of a send still in the outbox or failed */
  pendingKey(clientMsgId: string): string | undefined;
  upload(conversationId: string, data: Uint8Array, opts: UploadOptions): Promise<Attachment>;
  mediaUrl(mediaId: string, variant: "original" | "thumbnail"): Promise<string>;
  fetchBytes(url: string): Promise<Uint8Array>;
}

/** @internal The hooks ParleyClient calls; implemented by E2EE of "@parley/client/e2ee". */
export interface E2EEPlugin {
  attach(host: E2EEHost): void;
  load(): Promise<void>;
  connected(): void;
  stop(): void;
  open(wire: unknown): Promise<void>;
  frame(f: unknown): void;
  seal(conversationId: string, clientMsgId: string, type: string, body: string, attachments?: (string | Attachment)[]): SealedContent;
  keys(conversationId: string, clientMsgId: string, sealed: SealedContent, mismatch?: unknown): Promise<unknown[]>;
  done(clientMsgId: string): void;
  upload(conversationId: string, data: Uint8Array, opts?: UploadOptions): Promise<Attachment>;
}

export interface HistoryQuery {
  before?: number;
  after?: number;
  limit?: number;
}

/** Every event, by type. Each payload also carries its `type`. */
export interface ParleyEvents {
  status: { status: ConnectionStatus; previous: ConnectionStatus };
  connected: { reconnect: boolean };
  synced: {};
  disconnected: { code?: number; error?: ParleyError };
  session_ended: { error: ParleyError };
  message: { message: Message };
  message_changed: { message: Message };
  conversation: { conversation: ConversationState; action: string };
  conversation_removed: { conversationId: string };
  receipt: { conversationId: string; userId: string; deviceId?: string; kind: "delivered" | "read"; seq: number };
  typing: { conversationId: string; userId: string; state: "start" | "stop" };
  presence: { userId: string; state: "online" | "offline"; lastSeen?: string };
  send_failed: { clientMsgId: string; conversationId: string; error: ParleyError };
  token: { accessExpiresAt: number };
  /** e2ee: a user (maybe you) added a device; show "Bob added a new device" in conversationIds */
  e2ee_device_added: { userId: string; deviceId: string; conversationIds: string[] };
  /** e2ee: a device failed its key check (identity_changed, bad_key_signature, unknown_suite): the server is lying or broken */
  e2ee_device_untrusted: { userId: string; deviceId: string; reason: string };
  /** e2ee: a verified contact's security code changed: warn before the next send */
  e2ee_verification_changed: { userId: string };
}
export type EventType = keyof ParleyEvents;
export type ParleyEvent = { [K in EventType]: { type: K } & ParleyEvents[K] }[EventType];
