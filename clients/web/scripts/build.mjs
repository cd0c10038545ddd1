// Builds the browser client into webui/dist (embedded by parleyd at compile
// time): app JS and CSS under content-hashed names in assets/, index.html
// pointing at them, the service worker sw.js (which knows the asset names
// for its offline shell), the manifest and the icon. The SDK is bundled
// from source (@parley/client -> ../sdk/src/index.ts). The output is
// deterministic: the same sources give byte-identical files (no
// timestamps, hashes of contents only). Prints the gzipped total and fails
// above the budget (100 KB, SDK included).
//
// Usage: node scripts/build.mjs [--out DIR]   (default: ../../webui/dist)
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve, relative } from "node:path";
import { fileURLToPath } from "node:url";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outArg = process.argv.indexOf("--out");
const out = outArg > 0 ? resolve(process.argv[outArg + 1]) : resolve(web, "..", "..", "webui", "dist");
export const BUDGET_BYTES = 100 * 1024;

const common = {
  bundle: true,
  minify: true,
  write: false,
  legalComments: "none",
  charset: "utf8",
  target: ["es2020"],
  alias: { "@parley/client/e2ee": resolve(web, "..", "sdk", "src", "e2ee", "index.ts"), "@parley/client": resolve(web, "..", "sdk", "src", "index.ts") },
  logLevel: "warning",
};

function hash(buf) {
  return createHash("sha256").update(buf).digest("hex").slice(0, 12);
}

async function bundle(entry, opts = {}) {
  const r = await esbuild.build({ ...common, entryPoints: [resolve(web, entry)], outdir: "/x", ...opts });
  if (r.outputFiles.length !== 1) throw new Error(`${entry}: expected one output, got ${r.outputFiles.length}`);
  return Buffer.from(r.outputFiles[0].contents);
}

const js = await bundle("src/main.ts", { format: "esm" });
const css = await bundle("src/app.css", { loader: { ".css": "css" } });
const jsName = `assets/app-${hash(js)}.js`;
const cssName = `assets/app-${hash(css)}.css`;
const icon = readFileSync(resolve(web, "static", "icon.svg"));
const manifest = readFileSync(resolve(web, "static", "manifest.webmanifest"));
const html = Buffer.from(
  readFileSync(resolve(web, "src", "index.html"), "utf8").replace("%APP_JS%", "/" + jsName).replace("%APP_CSS%", "/" + cssName),
);
const shell = ["/", "/" + jsName, "/" + cssName, "/icon.svg", "/manifest.webmanifest"];
const sw = await bundle("src/sw.ts", {
  format: "iife",
  define: { __SHELL__: JSON.stringify(shell), __VERSION__: JSON.stringify(hash(Buffer.concat([html, js, css]))) },
});

const files = {
  "index.html": html,
  [jsName]: js,
  [cssName]: css,
  "sw.js": sw,
  "icon.svg": icon,
  "manifest.webmanifest": manifest,
};

// Files already as built are left alone, and a changed one is replaced by
// a rename: go test ./... may be compiling the webui package (embedding
// this directory) while the browser tests build, and must never see it
// half-written. Files of an older build are removed last.
function listFiles(dir, base = dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? listFiles(p, base) : [relative(base, p)];
  });
}
for (const [name, body] of Object.entries(files)) {
  const path = join(out, name);
  if (existsSync(path) && readFileSync(path).equals(body)) continue;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path + ".tmp", body);
  renameSync(path + ".tmp", path);
}
for (const name of listFiles(out)) {
  if (!(name in files)) rmSync(join(out, name));
}

// The budget counts what a first visit downloads: the page, its script
// and styles, and the service worker, each gzipped.
let total = 0;
const rows = [];
for (const name of ["index.html", jsName, cssName, "sw.js"]) {
  const gz = gzipSync(files[name], { level: 9 }).length;
  total += gz;
  rows.push(`  ${name.padEnd(32)} ${String(files[name].length).padStart(7)} B  ${String(gz).padStart(6)} B gzipped`);
}
console.log(`web client -> ${relative(process.cwd(), out) || "."}\n${rows.join("\n")}\n  total gzipped: ${(total / 1024).toFixed(1)} KB (budget ${BUDGET_BYTES / 1024} KB)`);
if (total > BUDGET_BYTES) {
  console.error(`over budget: ${total} > ${BUDGET_BYTES} bytes gzipped`);
  process.exit(1);
}
