// Close 4004 (this device opened a newer connection elsewhere) stops the
// SDK: the page says so and offers a Reconnect button instead of going quiet.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, handle, registerInPage } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

test("a connection replaced by a newer one shows a banner with Reconnect", { skip, timeout: 120000 }, async (t) => {
  const server = await startParleyd({ args: ["--max-connections-per-device", "1"] });
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const ctx = await browser.newContext();
  const one = await ctx.newPage();
  await registerInPage(one, server.base, handle("rep"), "Replaced");
  await one.waitForFunction(() => document.body.dataset.status === "online");
  const two = await ctx.newPage();
  await two.goto(server.base + "/");
  await two.waitForFunction(() => document.body.dataset.status === "online");
  const banner = one.locator('#banner[data-status="replaced"]');
  await banner.waitFor({ timeout: 30000 });
  assert.match(await banner.textContent(), /connected elsewhere/);
  assert.equal(await one.evaluate(() => document.body.dataset.status), "stopped");
  await one.locator("#reconnect").click();
  await one.waitForFunction(() => document.body.dataset.status === "online", null, { timeout: 30000 });
  assert.equal(await one.locator("#banner").isHidden(), true);
  await two.locator('#banner[data-status="replaced"]').waitFor({ timeout: 30000 });
});
