// Big groups (docs/protocol.md, "Big groups: paged members"): a paged
// conversation has member_count, me and a receipts summary instead of
// members; conversation frames name the changed members; status counts
// come from the summary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeClient, online, useClock, waitFor, CONV2, USER, DEVICE, BOB, CAROL, member, msg, entry } from "./fakes.mjs";

const brief = (s) => `${s.state} ${s.deliveredCount}/${s.readCount}/${s.memberCount}`;

function paged(lastSeq, me, receipts, count = 10000) {
  const c = { id: CONV2, kind: "group", title: "all hands", last_seq: lastSeq, created_at: "2026-11-27T09:00:00Z", member_count: count, members_paged: true };
  if (me) c.me = me;
  if (receipts) c.receipts = receipts;
  return c;
}

test("a paged conversation from sync: me, member count and the summary; status from the summary", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const own = (seq) => msg(seq, { conversation_id: CONV2, sender_id: USER, sender_device_id: DEVICE });
  // I sent 2 and 3 and read up to 3 myself; the summary counts me too.
  const summary = { from_seq: 1, delivered: [9000, 8000, 6001], read: [5000, 4000, 2001] };
  const ws = await online(client, { conversations: [entry(paged(3, member(USER, 3, 3), summary), [msg(1, { conversation_id: CONV2 }), own(2), own(3)])] });
  const s = client.conversation(CONV2);
  assert.equal(s.membersPaged, true);
  assert.deepEqual(s.members, []);
  assert.equal(s.memberCount, 10000);
  assert.equal(s.me.userId, USER);
  assert.deepEqual(s.receipts, { fromSeq: 1, delivered: [9000, 8000, 6001], read: [5000, 4000, 2001] });
  // My own watermarks are taken out of my own messages' counts.
  assert.equal(brief(client.status$(CONV2, 3).get()), "sent 6000/2000/9999");
  assert.equal(brief(client.status$(CONV2, 2).get()), "sent 7999/3999/9999");
  // Seqs the summary does not cover count 0 (ask REST for exact counts).
  assert.equal(brief(client.status$(CONV2, 7).get()), "sent 0/0/9999");
  // Only my own receipts come live; they raise me.
  ws.frame({ type: "receipt", conversation_id: CONV2, user_id: USER, device_id: "other", kind: "read", seq: 3 });
  assert.equal(client.conversation(CONV2).me.readSeq, 3);
  await client.close();
});

test("conversation frames of a paged conversation: changed members, my entry, the summary kept", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(paged(5, member(USER, 4, 5), { from_seq: 1, delivered: [3, 3, 3, 3, 2], read: [2, 2, 2, 2, 1] }))] });
  // Someone else joins: the count changes, my entry and the summary stay.
  ws.frame({ type: "conversation", action: "member_added", conversation: paged(5, null, null, 10001), user_ids: [CAROL], members: [member(CAROL, 5)], by_user_id: BOB });
  await waitFor(() => client.conversation(CONV2).memberCount === 10001, "the new count");
  let s = client.conversation(CONV2);
  assert.equal(s.me.readSeq, 4);
  assert.equal(s.receipts.fromSeq, 1);
  // I am made admin: my entry comes in members; watermarks never go down.
  ws.frame({ type: "conversation", action: "role_changed", conversation: paged(5, null, null, 10001), user_ids: [USER], members: [{ ...member(USER, 1, 1), role: "admin" }], by_user_id: BOB });
  await waitFor(() => client.conversation(CONV2).me.role === "admin", "my new role");
  s = client.conversation(CONV2);
  assert.equal(s.me.readSeq, 4);
  assert.equal(s.me.deliveredSeq, 5);
  // The group shrinks to the inline limit: members are listed again.
  ws.frame({ type: "conversation", action: "member_removed", conversation: { ...paged(5), members_paged: undefined, member_count: 2, members: [member(USER, 4, 5), member(BOB, 5, 5)] }, user_ids: [CAROL], by_user_id: BOB });
  await waitFor(() => client.conversation(CONV2).members.length === 2, "the inline list");
  s = client.conversation(CONV2);
  assert.equal(s.membersPaged, undefined);
  assert.equal(s.me, undefined);
  assert.equal(brief(client.status$(CONV2, 5).get()), "read 1/1/1");
  await client.close();
});

test("a big group created with me in it: its frame names no one, and I am in", async (t) => {
  useClock(t);
  const { client } = makeClient();
  const ws = await online(client, { conversations: [] });
  ws.frame({ type: "conversation", action: "created", conversation: paged(0), by_user_id: BOB });
  await waitFor(() => client.conversation(CONV2), "the new group");
  const s = client.conversation(CONV2);
  assert.equal(s.me.userId, USER);
  assert.equal(s.me.role, "member");
  assert.equal(s.me.readSeq, 0);
  // Live delivery starts at once: seq 1 is not a gap.
  ws.frame({ type: "message", message: msg(1, { conversation_id: CONV2 }) });
  await waitFor(() => client.messages(CONV2).length === 1, "the first message");
  await client.close();
});

test("members pages through the REST endpoint", async (t) => {
  useClock(t);
  const { client, server } = makeClient();
  await online(client, { conversations: [] });
  server.routes[`GET /v1/conversations/${CONV2}/members`] = (_, u) => {
    assert.equal(u.searchParams.get("after"), BOB);
    assert.equal(u.searchParams.get("limit"), "2");
    return [200, { member_count: 3, members: [member(CAROL, 1, 2)], next: CAROL }];
  };
  const page = await client.members(CONV2, { after: BOB, limit: 2 });
  assert.deepEqual(page, { memberCount: 3, members: [{ userId: CAROL, role: "member", readSeq: 1, deliveredSeq: 2, joinedAt: "2026-11-27T09:00:00Z" }], next: CAROL });
  await client.close();
});
