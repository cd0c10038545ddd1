// Media: Alice attaches a small PNG (setInputFiles); Bob sees the
// thumbnail (a signed /m/ link) and opens the lightbox, which Esc closes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deflateSync, crc32 } from "node:zlib";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, handle, registerInPage } from "./helpers.mjs";

const skip = haveChromium() && typeof crc32 === "function" ? false : "no Chromium (or no zlib.crc32)";

/** png makes a w x h RGB gradient PNG. */
function png(w, h) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set([(x * 255) / w, (y * 255) / h, 128], y * (w * 3 + 1) + 1 + x * 3);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

test("an attached image reaches the other user as a thumbnail; the lightbox opens and Esc closes it", { skip, timeout: 240000 }, async (t) => {
  const server = await startParleyd();
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const base = server.base;
  const alice = await (await browser.newContext()).newPage();
  const bob = await (await browser.newContext()).newPage();
  const errors = [];
  for (const p of [alice, bob]) p.on("pageerror", (e) => errors.push(String(e)));
  const ah = handle("alice");
  const bh = handle("bob");
  await alice.goto(base + "/");
  await registerInPage(alice, base, ah, "Alice");
  await registerInPage(bob, base, bh, "Bob");
  await alice.locator("#new-chat-handle").fill(bh);
  await alice.locator("#new-chat-handle").press("Enter");
  await alice.locator("#chat-title", { hasText: "Bob" }).waitFor();
  const convId = new URL(alice.url()).hash.replace("#/c/", "");
  await alice.locator("#composer").fill("hi");
  await alice.locator("#composer").press("Enter");
  await alice.locator("#attach-file").setInputFiles({ name: "grad.png", mimeType: "image/png", buffer: png(400, 200) });

  await bob.goto(base + "/#/c/" + convId);
  const img = bob.locator("#messages .thumb img");
  await img.waitFor({ timeout: 60000 });
  const src = await img.getAttribute("src");
  assert.match(src, /\/m\/[\w-]+\/thumbnail\?exp=\d+&sig=/);
  await bob.waitForFunction(() => { const i = document.querySelector("#messages .thumb img"); return i && i.complete && i.naturalWidth > 0; });
  assert.equal(await bob.locator("#messages .thumb img").evaluate((i) => i.naturalWidth), 320, "the server's thumbnail, longest side 320");
  await bob.locator("#messages .thumb").click();
  const full = bob.locator("dialog.lightbox img.full");
  await bob.waitForFunction(() => { const i = document.querySelector("dialog.lightbox img.full"); return i && i.complete && i.naturalWidth === 400; });
  assert.match(await full.getAttribute("src"), /\/original\?exp=/);
  await bob.keyboard.press("Escape");
  await bob.locator("dialog.lightbox").waitFor({ state: "detached" });
  await alice.locator("#messages .thumb img").waitFor({ timeout: 30000 }); // the sender sees it too, once acked
  assert.equal(await alice.locator("#messages .uploading").count(), 0, "the pending bubble is gone");
  assert.deepEqual(errors, []);
});
