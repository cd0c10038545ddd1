import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

test("the minified, gzipped bundle stays within 15 KB", () => {
  const size = JSON.parse(readFileSync(new URL("../../dist/size.json", import.meta.url), "utf8"));
  assert.ok(size.gzipBytes > 1000, "the measurement looks wrong: " + size.gzipBytes);
  assert.ok(size.gzipBytes <= 15 * 1024, `${size.gzipBytes} bytes gzipped is over the 15 KB budget`);
});
