// Refused sends stay visible (state failed) in messages() and survive a
// restart until the app discards them or retries them under a new id.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../dist/esm/index.js";
import { makeClient, online, useClock, waitFor, flush, CONV, USER, convObj, entry } from "./fakes.mjs";

async function refusedOne(t) {
  useClock(t);
  const storage = new MemoryStorage();
  const { client, server } = makeClient({ storage });
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  const out = client.send(CONV, "too rude", { clientMsgId: "bad" });
  await waitFor(() => ws.ofType("send").length === 1);
  ws.frame({ type: "error", id: ws.ofType("send")[0].id, error: { code: "forbidden", message: "not allowed" } });
  await assert.rejects(out.acked, (e) => e.code === "forbidden");
  await flush();
  return { client, server, storage, ws };
}

test("a refused send stays in messages() as failed, stored, and is restored after a restart", async (t) => {
  const { client, server, storage } = await refusedOne(t);
  const view = client.messages(CONV);
  assert.deepEqual(view.map((m) => [m.clientMsgId, m.body, m.status.get().state]), [["bad", "too rude", "failed"]]);
  assert.equal(view[0].status.get().error.code, "forbidden");
  assert.deepEqual(client.outbox(), [], "not in the outbox: it is not sent again");
  assert.deepEqual(client.failed(CONV).map((o) => o.clientMsgId), ["bad"]);
  assert.equal((await storage.get(USER + "/failed/bad")).body, "too rude");
  await client.close();
  const again = makeClient({ storage, server }).client;
  await again.restore();
  const v2 = again.messages(CONV);
  assert.deepEqual(v2.map((m) => [m.clientMsgId, m.status.get().state, m.status.get().error.code]), [["bad", "failed", "forbidden"]]);
});

test("discard removes a failed send from messages() and storage", async (t) => {
  const { client, storage } = await refusedOne(t);
  client.discard("bad");
  await flush();
  assert.deepEqual(client.messages(CONV), []);
  assert.equal(await storage.get(USER + "/failed/bad"), undefined);
});

test("retry sends the same body again under a new client_msg_id", async (t) => {
  const { client, storage, ws } = await refusedOne(t);
  const out = client.retry("bad");
  assert.ok(out);
  assert.notEqual(out.clientMsgId, "bad");
  await waitFor(() => ws.ofType("send").length === 2, "the retried send");
  const s = ws.ofType("send")[1];
  assert.equal(s.body, "too rude");
  assert.equal(s.client_msg_id, out.clientMsgId);
  assert.deepEqual(client.messages(CONV).map((m) => [m.clientMsgId, m.status.get().state]), [[out.clientMsgId, "sending"]]);
  assert.equal(await storage.get(USER + "/failed/bad"), undefined);
  assert.equal(client.retry("bad"), undefined, "only once");
  await client.logout();
});
