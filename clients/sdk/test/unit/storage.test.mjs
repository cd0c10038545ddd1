// The storage adapters, each through the same contract.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IDBFactory, IDBKeyRange } from "fake-indexeddb";
import { MemoryStorage, AsyncStorageAdapter, IndexedDBStorage } from "../../dist/esm/index.js";

/** A Map-backed stand-in with React Native AsyncStorage's shape. */
class FakeAsyncStorage {
  map = new Map();
  async getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  async setItem(k, v) {
    if (typeof v !== "string") throw new TypeError("AsyncStorage stores strings");
    this.map.set(k, v);
  }
  async removeItem(k) { this.map.delete(k); }
  async getAllKeys() { return [...this.map.keys()]; }
}

async function contract(s) {
  assert.equal(await s.get("missing"), undefined);
  await s.set("tokens", { a: 1, nested: { b: [1, 2] } });
  await s.set("u1/conv/x", { heldUpto: 3 });
  await s.set("u1/conv/y", { heldUpto: 4 });
  await s.set("u1/outbox/c1", { body: "hi" });
  await s.set("u10/conv/z", 5);
  await s.set("u1/position", "");
  assert.deepEqual(await s.get("tokens"), { a: 1, nested: { b: [1, 2] } });
  assert.equal(await s.get("u1/position"), "");
  assert.deepEqual((await s.keys("u1/conv/")).sort(), ["u1/conv/x", "u1/conv/y"]);
  assert.deepEqual((await s.keys("u1/")).sort(), ["u1/conv/x", "u1/conv/y", "u1/outbox/c1", "u1/position"]);
  await s.set("u1/conv/x", { heldUpto: 9 });
  assert.deepEqual(await s.get("u1/conv/x"), { heldUpto: 9 });
  await s.delete("u1/conv/x");
  assert.equal(await s.get("u1/conv/x"), undefined);
  assert.deepEqual(await s.keys("u1/conv/"), ["u1/conv/y"]);
  // Values are copies: changing what was stored changes nothing.
  const v = { n: 1 };
  await s.set("copy", v);
  v.n = 2;
  assert.deepEqual(await s.get("copy"), { n: 1 });
}

test("MemoryStorage", () => contract(new MemoryStorage()));

test("AsyncStorageAdapter: JSON strings under a prefix, app keys untouched", async () => {
  const as = new FakeAsyncStorage();
  await as.setItem("app:theme", "dark");
  await contract(new AsyncStorageAdapter(as));
  assert.equal(as.map.get("app:theme"), "dark");
  assert.equal(as.map.get("parley:tokens"), JSON.stringify({ a: 1, nested: { b: [1, 2] } }));
  const other = new AsyncStorageAdapter(as, "other:");
  assert.deepEqual(await other.keys(""), []);
});

test("IndexedDBStorage (fake-indexeddb)", async () => {
  const idb = { indexedDB: new IDBFactory(), IDBKeyRange };
  await contract(new IndexedDBStorage("parley-test", idb));
  // A second instance on the same database sees the data.
  const again = new IndexedDBStorage("parley-test", idb);
  assert.deepEqual(await again.get("u1/conv/y"), { heldUpto: 4 });
  const separate = new IndexedDBStorage("another", idb);
  assert.equal(await separate.get("tokens"), undefined);
});

test("IndexedDBStorage uses the globals by default", async () => {
  globalThis.indexedDB = new IDBFactory();
  globalThis.IDBKeyRange = IDBKeyRange;
  try {
    const s = new IndexedDBStorage();
    await s.set("k", [1]);
    assert.deepEqual(await s.get("k"), [1]);
  } finally {
    delete globalThis.indexedDB;
    delete globalThis.IDBKeyRange;
  }
});
