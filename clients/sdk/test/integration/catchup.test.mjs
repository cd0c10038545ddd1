// Scenario 3 of issue 12: a device that was offline catches up 1,000
// messages in 50 conversations, with sync pages that hold everything
// (syncLimit 50) and with gappy ones (syncLimit 5) that the SDK must
// backfill through history.
import test from "node:test";
import assert from "node:assert/strict";
import {
  server, client, record, waitFor, range, pool, Rest, PASSWORD, MemoryStorage,
} from "./helpers.mjs";

const CONVERSATIONS = 50;
const PER_CONVERSATION = 20;

async function catchUp(t, syncLimit) {
  const srv = await server(t);
  const [alice, carol] = await Promise.all([Rest.user(srv.base, "alice"), Rest.user(srv.base, "carol")]);
  const bobUser = await Rest.register(srv.base, "bob");
  const bob1 = await Rest.login(srv.base, bobUser.handle); // bob's device 1: sends and reads over REST

  // bob's device 2 logs in, connects, learns the 50 conversations, stores its position.
  const storage = new MemoryStorage();
  const b2 = client(t, srv.base, { storage });
  await b2.login(bobUser.handle, PASSWORD);
  await b2.connect();
  const convs = [await alice.createDirect(bob1.userId)];
  for (let i = 1; i < CONVERSATIONS; i++) {
    const owner = i % 2 ? alice : carol;
    convs.push(await owner.createGroup(`group ${i}`, [bob1.userId, (i % 2 ? carol : alice).userId]));
  }
  await waitFor(() => convs.every((c) => b2.conversation(c.id)), {
    what: "device 2 to learn all 50 conversations",
    detail: () => `holds ${b2.conversations().length}`,
  });
  await waitFor(() => b2.status === "online", { what: "device 2 online (synced)" });
  await b2.close();
  assert.equal(b2.status, "stopped");

  const t0 = Date.now();
  // Offline: 20 messages in each conversation, mostly from the others,
  // every fifth from bob's other device (his own: not unread).
  const sent = new Map(convs.map((c) => [c.id, []]));
  await pool(8, convs, async (c, i) => {
    for (let k = 0; k < PER_CONVERSATION; k++) {
      const sender = k % 5 === 4 ? bob1 : (c.kind === "direct" || (i + k) % 2 ? alice : carol);
      const m = await sender.send(c.id, `conversation ${i} message ${k}`);
      sent.get(c.id).push(m);
    }
  });
  t.diagnostic(`${CONVERSATIONS * PER_CONVERSATION} REST sends in ${Date.now() - t0} ms`);
  for (const c of convs) assert.deepEqual(sent.get(c.id).map((m) => m.seq), range(1, PER_CONVERSATION));
  // bob read the first conversation up to 10 on his other device.
  await bob1.read(convs[0].id, 10);
  const readSeqOf = (id) => (id === convs[0].id ? 10 : 0);
  const unreadOf = (id) => sent.get(id).filter((m) => m.seq > readSeqOf(id) && m.sender_id !== bob1.userId).length;

  // Device 2 comes back from its storage (a restart of the app) and catches up.
  const dev = client(t, srv.base, { storage, syncLimit });
  const rec = record(dev);
  let atSynced = null;
  dev.on("synced", () => {
    if (atSynced) return;
    atSynced = new Map(convs.map((c) => [c.id, {
      seqs: dev.messages(c.id).map((m) => m.seq),
      conversation: dev.conversation(c.id),
    }]));
  });
  assert.equal(await dev.restore(), true);
  const started = Date.now();
  await dev.connect();
  await waitFor(() => atSynced, { timeout: 60000, what: "the synced event" });
  const took = Date.now() - started;

  for (const [i, c] of convs.entries()) {
    const at = atSynced.get(c.id);
    assert.deepEqual(at.seqs, range(1, PER_CONVERSATION), `conversation ${i}: all 20 held when synced fired`);
    const state = dev.conversation(c.id);
    assert.equal(state.lastSeq, PER_CONVERSATION, `conversation ${i}: lastSeq`);
    assert.equal(state.readSeq, readSeqOf(c.id), `conversation ${i}: readSeq`);
    assert.equal(state.unreadCount, unreadOf(c.id), `conversation ${i}: unread counts the others' messages after readSeq`);
    const held = dev.messages(c.id);
    assert.deepEqual(held.map((m) => m.seq), range(1, PER_CONVERSATION));
    for (const [k, m] of held.entries()) {
      assert.equal(m.body, sent.get(c.id)[k].body, `conversation ${i} seq ${m.seq}: body`);
      assert.equal(m.clientMsgId, sent.get(c.id)[k].client_msg_id);
      assert.equal(m.senderId, sent.get(c.id)[k].sender_id);
    }
    assert.deepEqual(rec.messages(c.id).map((m) => m.seq), range(1, PER_CONVERSATION),
      `conversation ${i}: one message event per seq, in seq order`);
  }
  assert.equal(rec.of("synced").length >= 1, true);
  // held_upto == last_seq everywhere: the device reports delivered up to
  // it after the sync, and the server's view of bob's delivered_seq shows it.
  await waitFor(async () => {
    const views = await pool(8, convs, (c) => alice.conversation(c.id)); // alice is in all 50
    return views.every((v) => v.members.find((m) => m.user_id === bob1.userId).delivered_seq === PER_CONVERSATION);
  }, { timeout: 15000, interval: 200, what: "bob's delivered_seq to reach 20 in every conversation (held_upto == last_seq)" });
  const deliveredAfter = Date.now() - started;
  assert.equal(rec.of("disconnected").length, 0);
  t.diagnostic(`delivered watermarks at 20 everywhere ${deliveredAfter} ms after connect()`);
  t.diagnostic(`syncLimit ${syncLimit}: caught up ${CONVERSATIONS * PER_CONVERSATION} messages in ${took} ms`);
}

test("an offline device catches up 1,000 messages in 50 conversations (syncLimit 50)", async (t) => {
  await catchUp(t, 50);
});

test("an offline device catches up 1,000 messages in 50 conversations through gappy sync pages and history backfill (syncLimit 5)", async (t) => {
  await catchUp(t, 5);
});
