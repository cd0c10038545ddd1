// Web Push in the service worker: this browser cannot subscribe to a push
// service here, so the test hands the worker the payload parleyd's Web
// Push provider sends (push.Notification.Data(): every value a string)
// through the DevTools protocol, and checks the notification the worker
// shows, the silent read update that lowers it, and the one that closes it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, shot, handle, registerInPage, rest, login } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

test("the service worker shows parleyd's Web Push notification and closes it on a read update", { skip, timeout: 240000 }, async (t) => {
  const server = await startParleyd({ args: ["--vapid-subject", "mailto:ops@example.com"] });
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const base = server.base;

  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  await ctx.grantPermissions(["notifications"], { origin: base });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // A real conversation for the payload: Carol (in the page) and Dave.
  const carol = handle("carol");
  const dave = handle("dave");
  await registerInPage(page, base, carol, "Carol Stone");
  await rest(base, "POST", "/v1/accounts", "", { handle: dave, password: "correct horse battery", display_name: "Dave Hill" });
  const daveToken = await login(base, dave);
  const carolUser = await rest(base, "GET", `/v1/users?handle=${carol}`, daveToken);
  const carolId = carolUser.user?.id ?? carolUser.id;
  const conv = await rest(base, "POST", "/v1/conversations", daveToken, { kind: "direct", members: [carolId] });
  const convId = conv.conversation?.id ?? conv.id;
  const sent = await rest(base, "POST", `/v1/conversations/${convId}/messages`, daveToken, { client_msg_id: "push-test-1", type: "text", body: "hi" });
  const message = sent.message ?? sent;
  const daveId = message.sender_id;
  assert.ok(convId && daveId, "conversation and sender ids");

  // The page's worker is active and controls nothing yet; collect what it tells the page.
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await page.evaluate(() => {
    window.__sw = [];
    navigator.serviceWorker.addEventListener("message", (e) => window.__sw.push(e.data));
    navigator.serviceWorker.startMessages();
  });
  const cdp = await ctx.newCDPSession(page);
  const activated = new Promise((resolve) => {
    cdp.on("ServiceWorker.workerVersionUpdated", ({ versions }) => {
      const v = versions.find((v) => v.status === "activated" && v.scriptURL === base + "/sw.js");
      if (v) resolve(v.registrationId);
    });
  });
  await cdp.send("ServiceWorker.enable");
  const registrationId = await activated;

  const deliver = (data) => cdp.send("ServiceWorker.deliverPushMessage", { origin: base, registrationId, data: JSON.stringify(data) });
  const told = (type) => page.waitForFunction((type) => window.__sw.find((m) => m.type === type), type, { timeout: 20000 }).then((h) => h.jsonValue());
  const shown = () => page.evaluate((tag) => navigator.serviceWorker.ready.then((r) => r.getNotifications({ tag })).then((ns) => ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }))), convId);

  // A message notification, as push.Notification.Data() makes it.
  await deliver({
    type: "message", conversation_id: convId, seq: String(message.seq), count: "2", badge: "2",
    sender_id: daveId, sender_name: "Dave Hill", trace_id: message.id,
  });
  const got = await told("notification-shown");
  assert.equal(got.title, "Dave Hill");
  assert.equal(got.body, "2 new messages");
  assert.equal(got.tag, convId);
  let list = await shown();
  assert.equal(list.length, 1);
  assert.equal(list[0].title, "Dave Hill");
  assert.equal(list[0].body, "2 new messages");
  assert.equal(list[0].data.conversation_id, convId);

  // A read elsewhere that leaves one unread: the notification says so.
  await deliver({ type: "read", conversation_id: convId, seq: String(message.seq), count: "1", badge: "1" });
  assert.equal((await told("notification-updated")).count, 1);
  list = await shown();
  assert.equal(list.length, 1);
  assert.equal(list[0].body, "New message");

  // Read to the end: the silent update closes it.
  await deliver({ type: "read", conversation_id: convId, seq: String(message.seq), count: "0", badge: "0" });
  const closed = await told("notification-closed");
  assert.equal(closed.closed, 1);
  assert.deepEqual(await shown(), []);

  // A click on a notification opens the app at its conversation. The test
  // cannot click a system notification: it dispatches the worker's
  // notificationclick with the real notification object.
  await deliver({
    type: "message", conversation_id: convId, seq: String(message.seq), count: "1", badge: "1",
    sender_id: daveId, sender_name: "Dave Hill", trace_id: message.id,
  });
  await page.waitForFunction(() => window.__sw.filter((m) => m.type === "notification-shown").length === 2);
  assert.equal((await shown()).length, 1);
  assert.notEqual(new URL(page.url()).hash, "#/c/" + convId);
  const worker = ctx.serviceWorkers().find((w) => w.url() === base + "/sw.js") ?? (await ctx.waitForEvent("serviceworker"));
  await worker.evaluate(async (tag) => {
    const [n] = await self.registration.getNotifications({ tag });
    self.dispatchEvent(new NotificationEvent("notificationclick", { notification: n }));
  }, convId);
  await page.waitForFunction((h) => location.hash === h, "#/c/" + convId, { timeout: 20000 });
  await page.locator("#chat-title", { hasText: "Dave Hill" }).waitFor({ timeout: 20000 });
  await page.locator("#messages .body", { hasText: "hi" }).waitFor();
  assert.deepEqual(await shown(), [], "the clicked notification is closed");
  await shot(page, "31-push-click-opened-conversation");

  // The page's "Enable notifications": permission granted, the VAPID key
  // fetched; there is no push service here, so subscribing fails or times
  // out, and the page says so instead of hanging.
  await page.locator("#enable-push").click();
  await page.locator("#push-state", { hasText: /Notifications (on|unavailable)/ }).waitFor({ timeout: 20000 });
  await shot(page, "32-push-enable-without-push-service");

  // Read on this device: the page closes its own notifications for the
  // conversation it shows (the read push only reaches the other devices).
  const push = () => deliver({
    type: "message", conversation_id: convId, seq: String(message.seq), count: "1", badge: "1",
    sender_id: daveId, sender_name: "Dave Hill", trace_id: message.id,
  });
  const noneShown = async () => {
    for (let i = 0; i < 100 && (await shown()).length > 0; i++) await page.waitForTimeout(100);
    assert.deepEqual(await shown(), []);
  };
  const nShown = () => page.evaluate(() => window.__sw.filter((m) => m.type === "notification-shown").length);
  await push();
  await page.waitForFunction(() => window.__sw.filter((m) => m.type === "notification-shown").length === 3);
  await page.waitForTimeout(1500);
  assert.equal((await shown()).length, 1, "stays until read");
  await page.evaluate(() => document.dispatchEvent(new Event("visibilitychange")));
  await noneShown();

  // Log out: open notifications close, the kept names go, and the worker
  // shows no more pushes on this browser.
  await push();
  await page.waitForFunction(() => window.__sw.filter((m) => m.type === "notification-shown").length === 4);
  await page.waitForTimeout(1500);
  assert.equal((await shown()).length, 1, "stays until logout");
  await page.locator("#logout").click();
  await page.locator("#login").waitFor();
  await noneShown();
  assert.equal(await page.evaluate(() => localStorage.getItem("parley-web-users")), null);
  await push();
  assert.equal((await told("notification-dropped")).reason, "signed out");
  assert.deepEqual(await shown(), []);
  assert.equal(await nShown(), 4);
  assert.deepEqual(errors, []);
});
