// Shared by the browser tests: Debian's Chromium through playwright-core,
// the real parleyd through the testkit harness, screenshots under
// test-artifacts/, and a little REST for checking the server's side.
import { chromium } from "playwright-core";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const ARTIFACTS = resolve(dirname(fileURLToPath(import.meta.url)), "..", "test-artifacts");
export const PASSWORD = "correct horse battery";

/** haveChromium says whether the browser tests can run at all. */
export function haveChromium() {
  return existsSync(CHROMIUM);
}

/**
 * launch starts headless Chromium (playwright gives it a fresh temporary
 * profile, removed on close; its TMPDIR is ours, removed by close()).
 * Contexts made from it are separate users.
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "parley-chromium-"));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    env: { ...process.env, TMPDIR: profile },
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** shot saves a screenshot of page as test-artifacts/<name>.png. */
export async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, name + ".png") });
}

let seq = 0;
/** handle makes a unique handle for this run. */
export function handle(prefix) {
  seq++;
  return `${prefix}${Date.now().toString(36).slice(-5)}${seq}`;
}

/** registerInPage signs up through the page's form and waits for the main screen. */
export async function registerInPage(page, base, h, displayName) {
  await page.goto(base + "/");
  await page.locator("#handle").fill(h);
  await page.locator("#password").fill(PASSWORD);
  await page.locator("#display-name").fill(displayName);
  await page.locator("#register").click();
  await page.locator("#conversations").waitFor();
  await page.locator("#me-name", { hasText: displayName }).waitFor();
}

/** rest does one JSON request (token optional) and returns the parsed answer; it throws on a non-2xx. */
export async function rest(base, method, path, token, body) {
  const res = await fetch(base + path, {
    method,
    headers: { ...(token ? { Authorization: "Bearer " + token } : {}), ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

/** login logs in over REST (a separate device) and returns the access token. */
export async function login(base, h) {
  const out = await rest(base, "POST", "/v1/sessions", "", { handle: h, password: PASSWORD, device: { platform: "cli", name: "test" } });
  return out.access_token;
}
