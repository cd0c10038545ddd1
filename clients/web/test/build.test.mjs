// The build: deterministic (two builds are byte-identical, and equal to
// what is in webui/dist, which parleyd embeds), within the size budget,
// and the page loads nothing from elsewhere and runs no inline script.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = resolve(web, "..", "..", "webui", "dist");
const BUDGET = 100 * 1024;

function files(dir) {
  const out = {};
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = readFileSync(p);
    }
  };
  walk(dir);
  return out;
}

function build(out) {
  return execFileSync(process.execPath, [join(web, "scripts", "build.mjs"), "--out", out], { encoding: "utf8" });
}

test("the build is deterministic and is what webui/dist holds", () => {
  const a = mkdtempSync(join(tmpdir(), "web-a-"));
  const b = mkdtempSync(join(tmpdir(), "web-b-"));
  try {
    build(a);
    build(b);
    const fa = files(a);
    const fb = files(b);
    assert.deepEqual(Object.keys(fa).sort(), Object.keys(fb).sort());
    for (const k of Object.keys(fa)) assert.ok(fa[k].equals(fb[k]), `${k} differs between two builds`);
    const fd = files(dist);
    assert.deepEqual(Object.keys(fd).sort(), Object.keys(fa).sort(), "webui/dist is stale: run npm run build -w web");
    for (const k of Object.keys(fa)) assert.ok(fa[k].equals(fd[k]), `webui/dist/${k} is stale: run npm run build -w web`);
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

// In CI (CI=true, a fresh clone) the committed webui/dist, which every
// parleyd binary embeds, must be what the sources build: the test script
// has just rebuilt it, so any difference from the commit means it was not
// rebuilt after a change (to the client or to the SDK it bundles).
test("the committed webui/dist is what the sources build (CI)", { skip: process.env.CI ? false : "only in CI (CI=true): locally the build is not committed yet" }, () => {
  let out;
  try {
    out = execFileSync("git", ["status", "--porcelain", "--", "."], { cwd: dist, encoding: "utf8" });
  } catch (e) {
    assert.fail(`git status in webui/dist: ${e.message}`);
  }
  assert.equal(out, "", `webui/dist differs from the commit: run \`npm run build -w web\` in clients/ and commit webui/dist\n${out}`);
});

test("the first load is within 100 KB gzipped, SDK included", () => {
  const fd = files(dist);
  const html = fd["index.html"].toString();
  const js = /src="\/(assets\/app-[0-9a-f]{12}\.js)"/.exec(html)?.[1];
  const css = /href="\/(assets\/app-[0-9a-f]{12}\.css)"/.exec(html)?.[1];
  assert.ok(js && fd[js], "the page loads a hashed script");
  assert.ok(css && fd[css], "the page loads a hashed stylesheet");
  const total = ["index.html", js, css, "sw.js"].reduce((n, k) => n + gzipSync(fd[k], { level: 9 }).length, 0);
  console.log(`web client: ${(total / 1024).toFixed(1)} KB gzipped (budget 100 KB)`);
  assert.ok(total <= BUDGET, `${total} bytes gzipped > ${BUDGET}`);
  const readme = /Size: ([\d.]+) KB gzipped/.exec(readFileSync(join(web, "README.md"), "utf8"));
  assert.ok(readme, "README.md states the size");
  assert.ok(Math.abs(Number(readme[1]) - total / 1024) <= 1, `README.md says ${readme[1]} KB, the build is ${(total / 1024).toFixed(1)} KB`);
  // The SDK is in the bundle (not fetched from elsewhere).
  assert.match(fd[js].toString(), /\/v1\/ws\/ticket/);
});

test("the page loads nothing from other origins and has no inline script or style", () => {
  const fd = files(dist);
  const html = fd["index.html"].toString();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "inline script");
  assert.doesNotMatch(html, /<style|\sstyle=/, "inline style");
  for (const [k, v] of Object.entries(fd)) {
    if (!/\.(html|css)$/.test(k)) continue;
    assert.doesNotMatch(v.toString(), /(?:src|href)=["']?(?:https?:)?\/\/|url\(\s*["']?(?:https?:)?\/\//, `${k} refers to another origin`);
  }
});
