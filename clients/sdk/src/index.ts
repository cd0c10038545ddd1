export { ParleyClient } from "./client.js";
export { ParleyError } from "./errors.js";
export { MemoryStorage, IndexedDBStorage, AsyncStorageAdapter } from "./storage.js";
export type { Storage, AsyncStorageLike, IndexedDBLike } from "./storage.js";
export { EVENT_BUFFER } from "./rest.js";
export { decodeBlurhash } from "./media.js";
export type { UploadOptions } from "./media.js";
export type {
  User,
  Session,
  Message,
  Attachment,
  Member,
  MembersPage,
  ReceiptsSummary,
  ConversationState,
  Observable,
  MessageStatus,
  MessageView,
  OutgoingMessage,
  SendOptions,
  ConnectionStatus,
  PushRegistration,
  Presence,
  WebSocketLike,
  WebSocketConstructor,
  FetchResponse,
  FetchFn,
  Logger,
  ClientOptions,
  HistoryQuery,
  ParleyEvents,
  EventType,
  ParleyEvent,
} from "./types.js";
