// The published .d.ts compiles in a browser app (lib DOM, the DOM's
// WebSocket and fetch) and in a Node app (`ws`), both strict.
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const tsc = require.resolve("typescript/bin/tsc");
const dir = fileURLToPath(new URL("../types/", import.meta.url));

for (const name of ["browser", "node"]) {
  test(`the types compile in a ${name} app`, () => {
    execFileSync(process.execPath, [tsc, "-p", `tsconfig.${name}.json`], { cwd: dir, stdio: "pipe" });
  });
}
