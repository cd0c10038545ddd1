// Logging in, scrolling back through history page by page (loadOlder), and
// groups: created from the page, "read by k of n" as members read, members
// removed and added from the members dialog.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, shot, handle, rest, login, PASSWORD } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

async function signup(base, h, name) {
  const out = await rest(base, "POST", "/v1/accounts", "", { handle: h, password: PASSWORD, display_name: name });
  const token = await login(base, h);
  return { handle: h, id: out.user?.id ?? out.id, token };
}

test("login, history paging, a group with read by k of n and member changes", { skip, timeout: 120000 }, async (t) => {
  const server = await startParleyd({ args: ["--limits", "off"] });
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const base = server.base;

  const carol = await signup(base, handle("carol"), "Carol Stone");
  const dave = await signup(base, handle("dave"), "Dave Hill");
  const erin = await signup(base, handle("erin"), "Erin Moss");
  assert.ok(carol.id && dave.id && erin.id);

  // 130 messages from Dave before Carol ever opens the app: more than a page.
  const dm = await rest(base, "POST", "/v1/conversations", dave.token, { kind: "direct", members: [carol.id] });
  const dmId = dm.conversation?.id ?? dm.id;
  const TOTAL = 130;
  for (let i = 1; i <= TOTAL; i++) {
    await rest(base, "POST", `/v1/conversations/${dmId}/messages`, dave.token, { client_msg_id: `seed-${i}`, type: "text", body: `Old message ${i}` });
  }

  const page = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  await page.locator("#handle").fill(carol.handle);
  await page.locator("#password").fill("wrong password!");
  await page.locator("#password").press("Enter");
  await page.locator("#login-error", { hasText: /./ }).waitFor();
  await page.locator("#password").fill(PASSWORD);
  await page.locator("#password").press("Enter");
  await page.locator(`.conv[data-id="${dmId}"]`).waitFor({ timeout: 30000 });
  assert.match(await page.locator(`.conv[data-id="${dmId}"] .badge`).textContent(), /^\d+$/);

  // Open: the newest page; scrolling to the top loads older pages until the start.
  await page.locator(`.conv[data-id="${dmId}"]`).click();
  await page.locator("#messages .body", { hasText: `Old message ${TOTAL}` }).waitFor();
  const first = await page.locator("#messages .msg").count();
  assert.ok(first < TOTAL, `the first view holds a page, not everything (${first})`);
  // Scroll to the top until everything is there (a scroll while a page
  // is loading is ignored; each poll scrolls again).
  await page.waitForFunction((total) => {
    if (document.querySelectorAll("#messages .msg").length >= total) return true;
    const el = document.getElementById("scroller");
    el.scrollTop = 0;
    el.dispatchEvent(new Event("scroll"));
    return false;
  }, TOTAL, { timeout: 60000, polling: 250 });
  const bodies = await page.locator("#messages .body").allTextContents();
  assert.deepEqual(bodies, Array.from({ length: TOTAL }, (_, i) => `Old message ${i + 1}`), "every message once, in order");
  await shot(page, "21-history-scrolled-to-start");
  // Carol has read it all.
  await page.waitForFunction((id) => !document.querySelector(`.conv[data-id="${id}"] .badge`), dmId);

  // A keyboard user on the list keeps their place when it is redrawn.
  await page.locator(`.conv[data-id="${dmId}"]`).focus();
  await rest(base, "POST", `/v1/conversations/${dmId}/messages`, dave.token, { client_msg_id: "focus-1", type: "text", body: "One more" });
  await page.locator(`.conv[data-id="${dmId}"] .conv-last`, { hasText: "One more" }).waitFor({ timeout: 20000 });
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("data-id")), dmId);

  // A group from the dialog.
  await page.locator("#new-group").click();
  await page.locator("#group-title").fill("Weekend trip");
  await page.locator("#group-members").fill(`${dave.handle}, ${erin.handle}`);
  await page.locator("#group-members").press("Enter");
  await page.locator("#chat-title", { hasText: "Weekend trip" }).waitFor({ timeout: 20000 });
  const groupId = new URL(page.url()).hash.replace("#/c/", "");
  await page.locator("#composer").fill("Who brings the tent?");
  await page.locator("#composer").press("Enter");
  const tick = page.locator("#messages .msg.mine .tick").last();
  // Acked: the tick counts readers, and the message has its seq (drawn anew from the held message).
  await page.waitForFunction(() => {
    const last = document.querySelector("#messages .msg.mine:last-child");
    return /read by 0 of 2/.test(last?.querySelector(".tick")?.textContent ?? "") && Number(last?.getAttribute("data-seq")) > 0;
  });
  const seq = Number(await page.locator("#messages .msg.mine").last().getAttribute("data-seq"));
  assert.ok(seq > 0);

  await rest(base, "POST", `/v1/conversations/${groupId}/read`, dave.token, { seq });
  await page.waitForFunction(() => /read by 1 of 2/.test(document.querySelector("#messages .msg.mine:last-child .tick")?.textContent ?? ""), null, { timeout: 20000 });
  await shot(page, "22-group-read-by-1-of-2");
  await rest(base, "POST", `/v1/conversations/${groupId}/read`, erin.token, { seq });
  await page.waitForFunction(() => document.querySelector("#messages .msg.mine:last-child .tick")?.getAttribute("data-state") === "read", null, { timeout: 20000 });
  assert.match(await tick.textContent(), /read by 2 of 2/);

  // Members: remove Erin, add her back.
  await page.locator("#members").click();
  await page.locator(`#member-list li[data-user="${erin.id}"]`).waitFor();
  await page.locator(`#member-list li[data-user="${erin.id}"] button`).click();
  await page.locator(`#member-list li[data-user="${erin.id}"]`).waitFor({ state: "detached", timeout: 20000 });
  let server_members = (await rest(base, "GET", `/v1/conversations/${groupId}`, carol.token)).conversation.members.map((m) => m.user_id).sort();
  assert.deepEqual(server_members, [carol.id, dave.id].sort());
  await page.locator("#add-member").fill(erin.handle);
  await page.locator("#add-member").press("Enter");
  await page.locator(`#member-list li[data-user="${erin.id}"]`).waitFor({ timeout: 20000 });
  await shot(page, "23-group-members-dialog");
  server_members = (await rest(base, "GET", `/v1/conversations/${groupId}`, carol.token)).conversation.members.map((m) => m.user_id).sort();
  assert.deepEqual(server_members, [carol.id, dave.id, erin.id].sort());
  await page.keyboard.press("Escape");

  // Every control can be reached and named: inputs have labels, buttons text or a label.
  const unnamed = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll("input, textarea, button, [tabindex]")) {
      if (el.closest("[hidden]")) continue;
      const named = el.matches("input, textarea") ? el.labels.length > 0 || el.getAttribute("aria-label") : (el.textContent.trim() || el.getAttribute("aria-label"));
      if (!named) bad.push(el.outerHTML.slice(0, 80));
    }
    return bad;
  });
  assert.deepEqual(unnamed, []);
  // Keyboard: Tab from the composer reaches Send.
  await page.locator("#composer").focus();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "send");

  // The owner cannot leave without handing over: the page says why.
  await page.locator("#members").click();
  await page.locator(`#member-list li[data-user="${carol.id}"] button`, { hasText: "Leave" }).click();
  await page.locator("#toast:not([hidden])", { hasText: /owner/ }).waitFor({ timeout: 20000 });
  await page.keyboard.press("Escape");

  // A member leaves: the group goes from the list and the conversation closes.
  const club = await rest(base, "POST", "/v1/conversations", dave.token, { kind: "group", title: "Book club", members: [carol.id, erin.id] });
  const clubId = club.conversation?.id ?? club.id;
  await page.locator(`.conv[data-id="${clubId}"]`).click({ timeout: 30000 });
  await page.locator("#chat-title", { hasText: "Book club" }).waitFor();
  await page.locator("#members").click();
  await page.locator(`#member-list li[data-user="${carol.id}"] button`, { hasText: "Leave" }).click();
  await page.locator(`.conv[data-id="${clubId}"]`).waitFor({ state: "detached", timeout: 20000 });
  await page.locator("#empty").waitFor();
  assert.equal(new URL(page.url()).hash, "");
  server_members = (await rest(base, "GET", `/v1/conversations/${clubId}`, dave.token)).conversation.members.map((m) => m.user_id).sort();
  assert.deepEqual(server_members, [dave.id, erin.id].sort());

  assert.deepEqual(errors, []);
});
