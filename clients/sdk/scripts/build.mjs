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
/** The e2ee module's budget (minified, gzipped, its dependencies included). */
const E2EE_BUDGET = 48 * 1024;
const require = createRequire(import.meta.url);
rmSync(join(root, "dist"), { recursive: true, force: true });

execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", join(root, "tsconfig.json")], { stdio: "inherit", cwd: root });

const common = { entryPoints: [join(root, "src/index.ts")], bundle: true, target: "es2020", platform: "neutral", logLevel: "warning" };
await esbuild.build({ ...common, format: "cjs", outfile: join(root, "dist/cjs/index.cjs") });

// The e2ee module (@parley/client/e2ee) shares the core's ParleyError: its
// CommonJS build takes it from index.cjs; its dependencies are bundled in
// (@noble/* are ESM only). The ESM build (tsc) imports them by name.
const core = {
  name: "core",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/errors\.js$/ }, () => ({ path: "./index.cjs", external: true }));
  },
};
const e2ee = { ...common, entryPoints: [join(root, "src/e2ee/index.ts")], mainFields: ["module", "main"], conditions: ["import"], plugins: [core] };
await esbuild.build({ ...e2ee, format: "cjs", outfile: join(root, "dist/cjs/e2ee.cjs") });

async function measure(opts) {
  const min = await esbuild.build({ ...opts, format: "esm", minify: true, write: false });
  const code = min.outputFiles[0].contents;
  return { minifiedBytes: code.length, gzipBytes: gzipSync(code, { level: 9 }).length };
}
const size = { ...(await measure(common)), budgetBytes: 15 * 1024, e2ee: { ...(await measure(e2ee)), budgetBytes: E2EE_BUDGET } };
mkdirSync(join(root, "dist"), { recursive: true });
writeFileSync(join(root, "dist/size.json"), JSON.stringify(size, null, 2) + "\n");
console.log(`@parley/client: ${size.minifiedBytes} bytes minified, ${size.gzipBytes} bytes gzipped (budget ${size.budgetBytes})`);
console.log(`@parley/client/e2ee: ${size.e2ee.minifiedBytes} bytes minified, ${size.e2ee.gzipBytes} bytes gzipped with its dependencies (budget ${size.e2ee.budgetBytes})`);
