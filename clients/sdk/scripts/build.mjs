// Builds @parley/client: tsc for ESM + .d.ts (dist/esm), esbuild for the
// CommonJS build (dist/cjs/index.cjs), and the size of a minified, gzipped
// bundle of src/index.ts (dist/size.json), which a unit test holds to the budget.
import { execFileSync } from "node:child_process";
import { rmSync, mkdirSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
rmSync(join(root, "dist"), { recursive: true, force: true });

execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", join(root, "tsconfig.json")], { stdio: "inherit", cwd: root });

const common = { entryPoints: [join(root, "src/index.ts")], bundle: true, target: "es2020", platform: "neutral", logLevel: "warning" };
await esbuild.build({ ...common, format: "cjs", outfile: join(root, "dist/cjs/index.cjs") });

const min = await esbuild.build({ ...common, format: "esm", minify: true, write: false });
const code = min.outputFiles[0].contents;
const gzip = gzipSync(code, { level: 9 }).length;
const size = { minifiedBytes: code.length, gzipBytes: gzip, budgetBytes: 15 * 1024 };
mkdirSync(join(root, "dist"), { recursive: true });
writeFileSync(join(root, "dist/size.json"), JSON.stringify(size, null, 2) + "\n");
console.log(`@parley/client: ${code.length} bytes minified, ${gzip} bytes gzipped (budget ${size.budgetBytes})`);
