// Message requests (docs/protocol.md, section 16; on by default): a
// stranger's direct chat shows as a request with Accept, Decline and Block;
// accepting makes it an ordinary conversation on the server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startParleyd } from "../../testkit/parleyd.mjs";
import { haveChromium, launch, shot, handle, registerInPage, rest, login, PASSWORD } from "./helpers.mjs";

const skip = haveChromium() ? false : "no Chromium at /usr/bin/chromium";

test("a stranger's chat is a message request until accepted", { skip, timeout: 240000 }, async (t) => {
  const server = await startParleyd({ env: { PARLEY_MESSAGE_REQUESTS: "on" } });
  const { browser, close } = await launch();
  t.after(async () => { await close(); await server.cleanup(); });
  const base = server.base;

  const page = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const gina = handle("gina");
  await registerInPage(page, base, gina, "Gina Page");

  const hank = handle("hank");
  await rest(base, "POST", "/v1/accounts", "", { handle: hank, password: PASSWORD, display_name: "Hank Stranger" });
  const token = await login(base, hank);
  const ginaUser = await rest(base, "GET", `/v1/users?handle=${gina}`, token);
  const ginaId = ginaUser.user?.id ?? ginaUser.id;
  const conv = await rest(base, "POST", "/v1/conversations", token, { kind: "direct", members: [ginaId] });
  const convId = conv.conversation?.id ?? conv.id;
  await rest(base, "POST", `/v1/conversations/${convId}/messages`, token, { client_msg_id: "req-1", type: "text", body: "Hello, we have not met" });

  const item = page.locator(`.conv[data-id="${convId}"]`);
  await item.locator(".tag", { hasText: "Request" }).waitFor({ timeout: 30000 });
  await item.click();
  await page.locator("#request-bar:not([hidden])", { hasText: "Hank Stranger wants to chat with you" }).waitFor();
  await page.locator("#messages .body", { hasText: "Hello, we have not met" }).waitFor();
  await shot(page, "41-message-request");

  const mine = async () => (await rest(base, "GET", `/v1/conversations/${convId}`, await login(base, gina))).conversation.members.find((m) => m.user_id === ginaId);
  assert.equal((await mine()).request, true);
  await page.locator("#request-accept").click();
  await page.locator("#request-bar").waitFor({ state: "hidden" });
  assert.ok(!(await mine()).request, "accepted on the server");
  await item.locator(".tag").waitFor({ state: "detached" });
  assert.deepEqual(errors, []);
});
