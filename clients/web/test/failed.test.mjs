// A send the server refuses (here: over --max-body-bytes) stays in the
// conversation with "Not sent" and keyboard-reachable Retry / Delete
// buttons; it survives a reload; Delete removes it; Retry sends it again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, shot, handle, registerInPage, rest, PASSWORD } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

test("a refused send stays with Retry and Delete, across a reload", { skip, timeout: 120000 }, async (t) => {
  const server = await startParleyd({ args: ["--max-body-bytes", "20"] });
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const base = server.base;
  const bob = handle("bob");
  await rest(base, "POST", "/v1/accounts", "", { handle: bob, password: PASSWORD, display_name: "Bob" });
  const page = await (await browser.newContext()).newPage();
  await registerInPage(page, base, handle("alice"), "Alice");
  await page.locator("#new-chat-handle").fill(bob);
  await page.locator("#new-chat-handle").press("Enter");
  await page.locator("#chat-title", { hasText: "Bob" }).waitFor();

  const long = "this message is far too long for the server";
  await page.locator("#composer").fill(long);
  await page.locator("#composer").press("Enter");
  const failed = page.locator('#messages .msg.mine:has(.tick[data-state="failed"])');
  await failed.waitFor({ timeout: 30000 });
  assert.equal(await failed.locator(".body").textContent(), long, "the text is kept");
  await failed.locator("button.retry").waitFor();
  await shot(page, "failed-send");

  // It survives a reload (stored like the outbox).
  await page.reload();
  await page.locator('#messages .msg.mine:has(.tick[data-state="failed"])').waitFor({ timeout: 30000 });
  assert.equal(await failed.count(), 1);

  // Retry: sent again (refused again here), still one bubble, not two.
  await failed.locator("button.retry").click();
  await page.locator('#messages .msg.mine:has(.tick[data-state="failed"])').waitFor({ timeout: 30000 });
  await page.waitForTimeout(300);
  assert.equal(await page.locator("#messages .msg.mine").count(), 1);

  // Delete by keyboard.
  await failed.locator("button.discard").focus();
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll("#messages .msg").length === 0, null, { timeout: 5000 });
  await page.reload();
  await page.locator("#composer").waitFor();
  await page.waitForTimeout(500);
  assert.equal(await page.locator("#messages .msg").count(), 0, "deleted for good");
});
