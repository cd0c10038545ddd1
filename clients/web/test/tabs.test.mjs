// Two tabs of one browser profile share the tokens in IndexedDB. With a
// 4-second access token both renew several times in 15 s; the refresh runs
// under navigator.locks and the second tab adopts the first one's rotation,
// so nobody presents a used refresh token (which revokes the session: 4003
// and both tabs signed out).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, handle, registerInPage } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

test("two tabs of one user stay signed in across several token rotations", { skip, timeout: 120000 }, async (t) => {
  const server = await startParleyd({ args: ["--access-token-ttl", "4s", "--ping-interval", "1s", "--idle-timeout", "5s"] });
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const ctx = await browser.newContext();
  const one = await ctx.newPage();
  await registerInPage(one, server.base, handle("tabs"), "Tab User");
  const two = await ctx.newPage();
  await two.goto(server.base + "/");
  await two.locator("#conversations").waitFor();
  const ended = [];
  for (const [name, p] of [["one", one], ["two", two]]) {
    p.on("console", (m) => { if (/Signed out/.test(m.text())) ended.push(name); });
  }
  await one.waitForTimeout(15000);
  for (const p of [one, two]) {
    assert.equal(await p.locator("#login").count(), 0, "still signed in (no login form)");
    assert.equal(await p.locator("#conversations").count(), 1);
    await p.waitForFunction(() => document.body.dataset.status === "online", null, { timeout: 30000 });
  }
  // And the session still works on the server's side: a REST call from each tab.
  for (const p of [one, two]) {
    await p.locator("#new-chat-handle").fill("nobody-" + Date.now().toString(36));
    await p.locator("#new-chat-handle").press("Enter");
  }
  assert.deepEqual(ended, []);
});
