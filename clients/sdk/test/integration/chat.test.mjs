// Scenario 1 of issue 12: two users on three devices chatting through the
// real parleyd (alice on a phone and a laptop, bob on one device).
import test from "node:test";
import assert from "node:assert/strict";
import {
  server, account, device, record, waitFor, send, seqs, range,
} from "./helpers.mjs";

test("two users on three devices: every device gets every message once in order, status sending->sent->delivered->read, own reads clear unread", async (t) => {
  const srv = await server(t);
  const alice = await account(t, srv.base, "alice");
  const bob = await account(t, srv.base, "bob");
  const phone = alice.client;
  const laptop = await device(t, srv.base, alice.handle);
  const bobDev = bob.client;
  const devices = { phone, laptop, bob: bobDev };
  const recs = Object.fromEntries(Object.entries(devices).map(([k, c]) => [k, record(c)]));
  await Promise.all(Object.values(devices).map((c) => c.connect()));

  const direct = await phone.createDirect(bob.user.id);
  assert.equal(direct.kind, "direct");
  const group = await bobDev.createGroup("climbing", [alice.user.id]);
  assert.equal(group.kind, "group");
  for (const [name, c] of Object.entries(devices)) {
    await waitFor(() => c.conversation(direct.id) && c.conversation(group.id), {
      what: `${name} to learn both conversations`,
      detail: () => JSON.stringify(c.conversations().map((x) => x.id)),
    });
  }

  // Interleaved traffic in both directions, both conversations; no
  // waiting between sends, so acks and live frames cross.
  const outs = [];
  for (let i = 0; i < 4; i++) {
    outs.push({ from: "phone", conv: direct.id, out: send(phone, direct.id, `phone->bob ${i}`) });
    outs.push({ from: "bob", conv: direct.id, out: send(bobDev, direct.id, `bob->alice ${i}`) });
    outs.push({ from: "laptop", conv: group.id, out: send(laptop, group.id, `laptop->group ${i}`) });
    outs.push({ from: "bob", conv: group.id, out: send(bobDev, group.id, `bob->group ${i}`) });
    if (i % 2 === 0) outs.push({ from: "phone", conv: group.id, out: send(phone, group.id, `phone->group ${i}`) });
  }
  const acked = await Promise.all(outs.map((o) => o.out.acked));
  for (const [i, m] of acked.entries()) {
    assert.equal(m.clientMsgId, outs[i].out.clientMsgId, "ack carries the send's clientMsgId");
    assert.equal(m.conversationId, outs[i].conv);
    assert.ok(m.seq > 0);
  }
  const expected = {
    [direct.id]: outs.filter((o) => o.conv === direct.id).length,
    [group.id]: outs.filter((o) => o.conv === group.id).length,
  };
  // Per conversation the acked seqs are exactly 1..n: nothing lost or doubled on the server.
  for (const conv of [direct.id, group.id]) {
    assert.deepEqual(acked.filter((m) => m.conversationId === conv).map((m) => m.seq).sort((a, b) => a - b), range(1, expected[conv]));
  }

  for (const [name, c] of Object.entries(devices)) {
    for (const conv of [direct.id, group.id]) {
      const what = `${name} holding ${expected[conv]} messages of ${conv === direct.id ? "the direct conversation" : "the group"}`;
      await waitFor(() => c.messages(conv).filter((m) => m.seq > 0).length >= expected[conv] && recs[name].messages(conv).length >= expected[conv], {
        what,
        detail: () => `held ${JSON.stringify(seqs(c.messages(conv)))}, events ${JSON.stringify(seqs(recs[name].messages(conv)))}`,
      });
    }
  }
  // Give late duplicates a moment to show up before judging "once".
  await new Promise((r) => setTimeout(r, 300));
  const bodyOf = new Map(acked.map((m) => [m.clientMsgId, m.body]));
  for (const [name, c] of Object.entries(devices)) {
    for (const conv of [direct.id, group.id]) {
      const events = recs[name].messages(conv);
      assert.deepEqual(seqs(events), range(1, expected[conv]), `${name}: one message event per seq, in seq order`);
      const held = c.messages(conv);
      assert.deepEqual(seqs(held), range(1, expected[conv]), `${name}: held messages ascending, no duplicates, nothing pending`);
      for (const m of held) assert.equal(m.body, bodyOf.get(m.clientMsgId), `${name}: body of seq ${m.seq}`);
    }
  }
  // The laptop sees the phone's sends (its own user's other device), and vice versa.
  const phoneIds = new Set(outs.filter((o) => o.from === "phone").map((o) => o.out.clientMsgId));
  const laptopSaw = [...recs.laptop.messages(direct.id), ...recs.laptop.messages(group.id)].filter((m) => phoneIds.has(m.clientMsgId));
  assert.equal(laptopSaw.length, phoneIds.size, "the laptop got every message alice sent from her phone");
  for (const m of laptopSaw) assert.equal(m.senderId, alice.user.id);
  const laptopIds = new Set(outs.filter((o) => o.from === "laptop").map((o) => o.out.clientMsgId));
  assert.equal(recs.phone.messages(group.id).filter((m) => laptopIds.has(m.clientMsgId)).length, laptopIds.size, "the phone got every message alice sent from her laptop");

  // Per-message status: sending -> sent -> delivered (bob's device reports) -> read (bob marks read).
  const probe = send(phone, direct.id, "did you get this?");
  const states = [];
  probe.status.subscribe((s) => { if (states[states.length - 1] !== s.state) states.push(s.state); });
  assert.equal(states[0], "sending", "a new send starts as sending");
  const pm = await probe.acked;
  await waitFor(() => probe.status.get().state === "delivered" || probe.status.get().state === "read", {
    what: "the probe to show delivered after bob's device reported it",
    detail: () => JSON.stringify({ states, status: probe.status.get() }),
  });
  assert.deepEqual(states, ["sending", "sent", "delivered"], "status went sending -> sent -> delivered (not yet read)");
  const d = probe.status.get();
  assert.equal(d.memberCount, 1);
  assert.equal(d.deliveredCount, 1);
  assert.equal(d.readCount, 0);
  // The laptop shows the same for its user's message.
  await waitFor(() => laptop.status$(direct.id, pm.seq).get().state === "delivered", {
    what: "the laptop's status of the phone's message to be delivered",
    detail: () => JSON.stringify(laptop.status$(direct.id, pm.seq).get()),
  });
  await waitFor(() => bobDev.messages(direct.id).some((m) => m.seq === pm.seq), { what: "bob to hold the probe" });
  await bobDev.markRead(direct.id);
  await waitFor(() => probe.status.get().state === "read", {
    what: "the probe to show read after bob marked the conversation read",
    detail: () => JSON.stringify({ states, status: probe.status.get() }),
  });
  assert.deepEqual(states, ["sending", "sent", "delivered", "read"]);
  const r = probe.status.get();
  assert.equal(r.readCount, 1);
  assert.equal(r.deliveredCount, 1);
  await waitFor(() => laptop.status$(direct.id, pm.seq).get().state === "read", {
    what: "the laptop's status of the phone's message to be read",
    detail: () => JSON.stringify(laptop.status$(direct.id, pm.seq).get()),
  });
  // Older messages of alice's are read too (a watermark), bob's own are not "read by others".
  const first = acked.find((m) => m.conversationId === direct.id && m.senderId === alice.user.id);
  assert.equal(phone.status$(direct.id, first.seq).get().state, "read");

  // Unread: bob writes in the group; both of alice's devices count it;
  // reading on the phone clears it on the laptop (read receipt of her own user).
  const more = [0, 1, 2].map((i) => send(bobDev, group.id, `unread ${i}`));
  const moreAcked = await Promise.all(more.map((o) => o.acked));
  const lastSeq = Math.max(...moreAcked.map((m) => m.seq));
  const fromBob = [...acked, ...moreAcked].filter((m) => m.conversationId === group.id && m.senderId === bob.user.id).length;
  for (const [name, c] of [["phone", phone], ["laptop", laptop]]) {
    await waitFor(() => c.conversation(group.id)?.unreadCount === fromBob && c.conversation(group.id)?.lastSeq === lastSeq, {
      what: `${name}: group unread ${fromBob} at lastSeq ${lastSeq}`,
      detail: () => JSON.stringify(c.conversation(group.id)),
    });
  }
  assert.equal(bobDev.conversation(group.id).unreadCount, expected[group.id] - outs.filter((o) => o.conv === group.id && o.from === "bob").length,
    "bob's unread counts only alice's messages");
  await phone.markRead(group.id);
  assert.equal(phone.conversation(group.id).unreadCount, 0, "markRead clears the phone's unread at once");
  assert.equal(phone.conversation(group.id).readSeq, lastSeq, "markRead defaults to the newest held seq");
  await waitFor(() => laptop.conversation(group.id)?.unreadCount === 0 && laptop.conversation(group.id)?.readSeq === lastSeq, {
    what: "the laptop's group unread to clear after the phone read it",
    detail: () => JSON.stringify(laptop.conversation(group.id)),
  });
  // bob sees alice's read of his group messages.
  await waitFor(() => bobDev.status$(group.id, lastSeq).get().state === "read", {
    what: "bob to see his last group message read",
    detail: () => JSON.stringify(bobDev.status$(group.id, lastSeq).get()),
  });
  // The direct conversation's unread on alice's devices is untouched by the group read.
  assert.equal(laptop.conversation(direct.id).unreadCount, phone.conversation(direct.id).unreadCount);
  for (const name of Object.keys(devices)) {
    assert.equal(recs[name].of("disconnected").length, 0, `${name} stayed connected`);
    assert.equal(recs[name].of("session_ended").length, 0);
  }
});
