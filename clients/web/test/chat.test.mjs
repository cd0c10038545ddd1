// Two people chat in two browser contexts against the real parleyd: a
// direct chat started by handle, typing, ticks that turn to read, presence;
// then the server stops, one of them sends (the message shows "sending"
// and the offline banner is up), the server comes back, and the message is
// delivered once: the page shows exactly the server's history.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, shot, handle, registerInPage, rest, login } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

/** domMessages lists the bodies of the messages the page shows, in order. */
async function domMessages(page) {
  return page.locator("#messages .msg .body").allTextContents();
}

test("two users chat; ticks, typing, presence; a server restart loses and doubles nothing", { skip, timeout: 240000 }, async (t) => {
  const server = await startParleyd();
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const base = server.base;

  const aliceCtx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const bobCtx = await browser.newContext({ viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
  const alice = await aliceCtx.newPage();
  const bob = await bobCtx.newPage();
  const errors = [];
  for (const p of [alice, bob]) {
    p.on("pageerror", (e) => errors.push(String(e)));
    p.on("console", (m) => { if (m.type() === "error" && !/Failed to load resource|ERR_CONNECTION_REFUSED|WebSocket/.test(m.text())) errors.push(m.text()); });
  }

  const aliceHandle = handle("alice");
  const bobHandle = handle("bob");
  await alice.goto(base + "/");
  await alice.locator("#handle").waitFor();
  await shot(alice, "01-login");
  await registerInPage(alice, base, aliceHandle, "Alice Liddell");
  await registerInPage(bob, base, bobHandle, "Bob Builder");
  await shot(alice, "02-alice-no-conversations");

  // Alice starts a direct chat with Bob by handle.
  await alice.locator("#new-chat-handle").fill(bobHandle);
  await alice.locator("#new-chat-handle").press("Enter");
  await alice.locator("#chat-title", { hasText: "Bob Builder" }).waitFor();
  const convId = new URL(alice.url()).hash.replace("#/c/", "");
  assert.match(convId, /^[\w-]+$/);

  // Bob sees it in his list (the conversation event) and opens it.
  const bobConv = bob.locator(`.conv[data-id="${convId}"]`);
  await bobConv.waitFor({ timeout: 30000 });
  await bobConv.click();
  await bob.locator("#chat-title", { hasText: "Alice Liddell" }).waitFor();

  // Typing: Alice types, Bob sees it.
  await alice.locator("#composer").click();
  await alice.keyboard.type("Hello Bob", { delay: 20 });
  await bob.locator("#typing", { hasText: "typing" }).waitFor({ timeout: 20000 });
  await shot(bob, "03-bob-sees-alice-typing-phone");

  // Enter sends; Bob has it open, so it turns to read.
  await alice.keyboard.press("Enter");
  assert.equal(await alice.locator("#composer").inputValue(), "", "Enter sends and clears the composer");
  await bob.locator("#messages .msg.theirs .body", { hasText: "Hello Bob" }).waitFor();
  const aliceTick = alice.locator("#messages .msg.mine").last().locator(".tick");
  await alice.waitForFunction(() => document.querySelector("#messages .msg.mine:last-child .tick")?.getAttribute("data-state") === "read", null, { timeout: 30000 });
  assert.equal(await aliceTick.getAttribute("aria-label"), "Read");
  await shot(alice, "04-alice-message-read");

  // Bob replies with the send button; Alice, with it open, reads it.
  await bob.locator("#composer").fill("Hi Alice! How are you?");
  await bob.locator("#send").click();
  await alice.locator("#messages .msg.theirs .body", { hasText: "How are you?" }).waitFor();
  await bob.waitForFunction(() => document.querySelector("#messages .msg.mine:last-child .tick")?.getAttribute("data-state") === "read", null, { timeout: 30000 });
  for (let i = 1; i <= 3; i++) {
    await alice.locator("#composer").fill(`Message ${i} before the restart`);
    await alice.locator("#composer").press("Enter");
  }
  await bob.locator("#messages .body", { hasText: "Message 3 before the restart" }).waitFor();
  await shot(bob, "05-bob-conversation-phone");

  // The server stops. Alice sees the banner, sends, and the message waits.
  await server.stop();
  await alice.locator("#banner:not([hidden])").waitFor({ timeout: 30000 });
  await alice.locator("#composer").fill("Sent while the server was down");
  await alice.locator("#composer").press("Enter");
  const pending = alice.locator("#messages .msg.mine", { hasText: "Sent while the server was down" });
  await pending.waitFor();
  assert.equal(await pending.locator(".tick").getAttribute("data-state"), "sending");
  assert.match(await alice.locator("#banner").textContent(), /Offline|Connecting/);
  await shot(alice, "06-alice-offline-sending");

  // The server comes back: the message goes out once and Bob reads it.
  await server.start();
  await bob.locator("#messages .body", { hasText: "Sent while the server was down" }).waitFor({ timeout: 60000 });
  await alice.waitForFunction(
    () => [...document.querySelectorAll("#messages .msg.mine")].pop()?.querySelector(".tick")?.getAttribute("data-state") === "read",
    null, { timeout: 30000 });
  await alice.locator("#banner[hidden]").waitFor({ state: "attached", timeout: 30000 });
  // Presence: a new conversation's members learn each other's presence at
  // the next connection (docs/protocol.md, section 9): after the restart,
  // Alice's list and header show Bob online.
  await alice.locator(`.conv[data-id="${convId}"] .dot`).waitFor({ timeout: 30000 });
  await alice.locator("#chat-sub", { hasText: "online" }).waitFor({ timeout: 5000 });
  await shot(alice, "07-alice-after-restart-delivered");
  await shot(bob, "08-bob-after-restart-phone");

  // Nothing lost, nothing doubled: both pages show the server's history.
  const token = await login(base, aliceHandle);
  const hist = await rest(base, "GET", `/v1/conversations/${convId}/messages?limit=100`, token);
  const serverBodies = hist.messages.sort((a, b) => a.seq - b.seq).map((m) => m.body);
  assert.deepEqual(serverBodies, [
    "Hello Bob", "Hi Alice! How are you?",
    "Message 1 before the restart", "Message 2 before the restart", "Message 3 before the restart",
    "Sent while the server was down",
  ]);
  assert.deepEqual(await domMessages(alice), serverBodies, "Alice's page shows the server's history");
  assert.deepEqual(await domMessages(bob), serverBodies, "Bob's page shows the server's history");
  const keys = await alice.locator("#messages .msg").evaluateAll((els) => els.map((e) => e.getAttribute("data-key")));
  assert.equal(new Set(keys).size, keys.length, "no message is drawn twice");

  // Unread counts: Bob goes back to his list; Alice sends; the list counts it.
  await bob.locator(".chat-head .back").click();
  await alice.locator("#composer").fill("Are you there?");
  await alice.locator("#composer").press("Enter");
  await bob.locator(`.conv[data-id="${convId}"] .badge`, { hasText: "1" }).waitFor({ timeout: 30000 });
  assert.match(await bob.locator(`.conv[data-id="${convId}"] .conv-last`).textContent(), /Are you there\?/);
  await shot(bob, "09-bob-list-unread-phone");

  // A reload restores the session from IndexedDB: the list still shows the
  // last message, and a deep link opens the conversation with its history.
  await bob.reload();
  await bob.locator(`.conv[data-id="${convId}"] .conv-last`, { hasText: "Are you there?" }).waitFor({ timeout: 30000 });
  await bob.goto(base + "/#/c/" + convId);
  await bob.locator("#messages .body", { hasText: "Are you there?" }).waitFor({ timeout: 30000 });
  await bob.waitForFunction((n) => document.querySelectorAll("#messages .msg").length === n, serverBodies.length + 1, { timeout: 20000 });
  assert.deepEqual(await domMessages(bob), [...serverBodies, "Are you there?"]);
  await shot(bob, "10-bob-after-reload-phone");

  // A load while the server is down: the service worker serves the app
  // shell, the session and the list come from IndexedDB, the banner says
  // offline.
  await server.stop();
  await bob.goto(base + "/");
  await bob.locator(`.conv[data-id="${convId}"]`).waitFor({ timeout: 30000 });
  await bob.locator("#banner:not([hidden])", { hasText: "Offline" }).waitFor({ timeout: 30000 });
  await shot(bob, "11-bob-loaded-while-server-down-phone");

  assert.deepEqual(errors, [], "no page errors");
});
