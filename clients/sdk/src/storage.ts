/**
 * Storage is where the SDK keeps tokens, the sync position, per-conversation
 * state and the outbox. All async; keys are strings, values JSON-serialisable.
 */
export interface Storage {
  get<T>(key: string): Promise<T | undefined>;
  set<T>(key: string, value: T): Promise<void>;
  delete(key: string): Promise<void>;
  /** Every key starting with prefix. */
  keys(prefix: string): Promise<string[]>;
}

/** MemoryStorage keeps copies of the values in a Map: nothing survives the process. */
export class MemoryStorage implements Storage {
  private m = new Map<string, string>();
  async get<T>(key: string): Promise<T | undefined> {
    const v = this.m.get(key);
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }
  async set<T>(key: string, value: T): Promise<void> {
    this.m.set(key, JSON.stringify(value));
  }
  async delete(key: string): Promise<void> {
    this.m.delete(key);
  }
  async keys(prefix: string): Promise<string[]> {
    return [...this.m.keys()].filter((k) => k.startsWith(prefix));
  }
}

/** The shape of React Native's AsyncStorage (strings in, strings out). */
export interface AsyncStorageLike {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
  removeItem(key: string): Promise<void>;
  getAllKeys(): Promise<readonly string[]>;
}

/**
 * AsyncStorageAdapter stores JSON strings in anything with AsyncStorage's
 * shape. Keys get `prefix` (default "parley:") so that the app's own keys in
 * the same AsyncStorage never clash.
 */
export class AsyncStorageAdapter implements Storage {
  constructor(private s: AsyncStorageLike, private prefix = "parley:") {}
  async get<T>(key: string): Promise<T | undefined> {
    const v = await this.s.getItem(this.prefix + key);
    return v == null ? undefined : (JSON.parse(v) as T);
  }
  set<T>(key: string, value: T): Promise<void> {
    return this.s.setItem(this.prefix + key, JSON.stringify(value));
  }
  delete(key: string): Promise<void> {
    return this.s.removeItem(this.prefix + key);
  }
  async keys(prefix: string): Promise<string[]> {
    const p = this.prefix + prefix;
    return (await this.s.getAllKeys()).filter((k) => k.startsWith(p)).map((k) => k.slice(this.prefix.length));
  }
}

// The part of IndexedDB the adapter uses (no DOM lib needed).
interface IDBReq<T = any> { result: T; error: unknown; onsuccess: ((e: unknown) => void) | null; onerror: ((e: unknown) => void) | null }
interface IDBOpenReq extends IDBReq { onupgradeneeded: ((e: unknown) => void) | null }
interface IDBStore {
  get(k: string): IDBReq;
  put(v: unknown, k: string): IDBReq;
  delete(k: string): IDBReq;
  getAllKeys(range?: unknown): IDBReq<string[]>;
}
interface IDBDb {
  transaction(store: string, mode: "readonly" | "readwrite"): { objectStore(name: string): IDBStore };
  createObjectStore(name: string): unknown;
  objectStoreNames: { contains(name: string): boolean };
}
/** The IndexedDB factory and key range, as `globalThis.indexedDB` and `globalThis.IDBKeyRange`. */
export interface IndexedDBLike {
  indexedDB: { open(name: string, version?: number): IDBOpenReq };
  IDBKeyRange: { bound(lower: string, upper: string): unknown };
}

const STORE = "kv";

function done<T>(r: IDBReq<T>): Promise<T> {
  return new Promise((res, rej) => {
    r.onsuccess = () => res(r.result);
    r.onerror = () => rej(r.error);
  });
}

/**
 * IndexedDBStorage keeps the SDK's state in one object store ("kv") of the
 * database dbName (default "parley"). idb defaults to the globals.
 */
export class IndexedDBStorage implements Storage {
  private db?: Promise<IDBDb>;
  private idb: IndexedDBLike;
  constructor(private dbName = "parley", idb?: IndexedDBLike) {
    const g = globalThis as any;
    this.idb = idb || { indexedDB: g.indexedDB, IDBKeyRange: g.IDBKeyRange };
  }
  private store(mode: "readonly" | "readwrite"): Promise<IDBStore> {
    if (!this.db) {
      const r = this.idb.indexedDB.open(this.dbName, 1);
      r.onupgradeneeded = () => {
        const db = r.result as IDBDb;
        if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE);
      };
      this.db = done(r);
    }
    return this.db.then((db) => db.transaction(STORE, mode).objectStore(STORE));
  }
  async get<T>(key: string): Promise<T | undefined> {
    return done((await this.store("readonly")).get(key)) as Promise<T | undefined>;
  }
  async set<T>(key: string, value: T): Promise<void> {
    await done((await this.store("readwrite")).put(JSON.parse(JSON.stringify(value)), key));
  }
  async delete(key: string): Promise<void> {
    await done((await this.store("readwrite")).delete(key));
  }
  async keys(prefix: string): Promise<string[]> {
    const s = await this.store("readonly");
    return done(s.getAllKeys(this.idb.IDBKeyRange.bound(prefix, prefix + "\uffff")));
  }
}
