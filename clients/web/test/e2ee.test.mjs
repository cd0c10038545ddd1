// End-to-end encryption in the browser against the real parleyd: Alice
// starts an encrypted chat with the checkbox; Bob's browser shows the lock
// and her decrypted text; both see the same safety number in the members
// dialog and Bob marks her verified; a message sent before Bob's browser had
// keys shows as "waiting for this message"; the server only ever serves
// ciphertext.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, shot, handle, registerInPage, rest, login } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

test("an end-to-end encrypted chat in two browsers: lock marker, plaintext only in the pages, the same safety number, a message waiting", { skip, timeout: 240000 }, async (t) => {
  const server = await startParleyd({ args: ["--limits", "off"] });
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const base = server.base;
  const alice = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
  const bob = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
  const errors = [];
  for (const p of [alice, bob]) {
    p.on("pageerror", (e) => errors.push(String(e)));
    p.on("console", (m) => { if (m.type() === "error" && !/Failed to load resource|WebSocket/.test(m.text())) errors.push(m.text()); });
  }
  const aliceHandle = handle("alice");
  const bobHandle = handle("bob");
  await registerInPage(alice, base, aliceHandle, "Alice Liddell");
  // Bob's account exists, but his browser logs in later: the first message is sealed to no device of his.
  await rest(base, "POST", "/v1/accounts", "", { handle: bobHandle, password: "correct horse battery", display_name: "Bob Builder" });

  await alice.locator("#new-chat-e2ee").check();
  await alice.locator("#new-chat-handle").fill(bobHandle);
  await alice.locator("#new-chat-handle").press("Enter");
  await alice.locator("#chat-title .lock").waitFor();
  const convId = new URL(alice.url()).hash.replace("#/c/", "");
  await alice.locator("#composer").fill("before your browser had keys");
  await alice.locator("#composer").press("Enter");
  await alice.locator("#messages .msg.mine .tick[data-state=sent], #messages .msg.mine .tick[data-state=delivered]").first().waitFor({ timeout: 20000 });

  // Bob logs in in his browser (a new device, keys made and published there).
  await bob.goto(base + "/");
  await bob.locator("#handle").fill(bobHandle);
  await bob.locator("#password").fill("correct horse battery");
  await bob.locator("#login").click();
  const bobConv = bob.locator(`.conv[data-id="${convId}"]`);
  await bobConv.waitFor({ timeout: 30000 });
  assert.equal(await bobConv.locator(".lock").count(), 1, "the lock marker in the list");
  await bobConv.click();
  await bob.locator("#chat-title .lock").waitFor();
  await bob.locator("#messages .msg .waiting", { hasText: "Waiting for this message" }).waitFor({ timeout: 20000 });

  // Alice's next message is sealed to Bob's browser too.
  await alice.locator("#composer").fill("hello Bob, only you can read this");
  await alice.locator("#composer").press("Enter");
  await bob.locator("#messages .msg .body", { hasText: "hello Bob, only you can read this" }).waitFor({ timeout: 30000 });
  await bob.locator("#composer").fill("and only you this");
  await bob.locator("#composer").press("Enter");
  await alice.locator("#messages .msg .body", { hasText: "and only you this" }).waitFor({ timeout: 30000 });
  await shot(bob, "e2ee-01-bob-reads");

  // The server holds ciphertext only.
  const token = await login(base, aliceHandle);
  const raw = await rest(base, "GET", `/v1/conversations/${convId}/messages`, token);
  assert.ok(raw.messages.length >= 3);
  for (const m of raw.messages) assert.deepEqual([m.type, m.body], ["encrypted", ""]);
  assert.ok(!JSON.stringify(raw).includes("only you"));

  // The same safety number on both sides; Bob marks Alice verified.
  const numberOn = async (page) => {
    await page.locator("#members").click();
    const n = page.locator(".safety-number");
    await n.filter({ hasText: /^\d{5}( \d{5}){11}$/ }).waitFor({ timeout: 20000 });
    return n.textContent();
  };
  const an = await numberOn(alice);
  const bn = await numberOn(bob);
  assert.equal(an, bn);
  await bob.locator(".safety button.verify").click();
  await bob.locator(".verify-state", { hasText: "Verified" }).waitFor();
  await shot(bob, "e2ee-02-safety-number");
  assert.deepEqual(errors, []);
});
