import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const size = JSON.parse(readFileSync(new URL("../../dist/size.json", import.meta.url), "utf8"));
const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** stated reads the README's figure for a marker like "Size:" ("13,296 bytes"), as a number. */
function stated(marker) {
  const m = readme.match(new RegExp(marker + "\\D*([\\d,]+) bytes"));
  assert.ok(m, `the README states no figure after "${marker}"`);
  return Number(m[1].replace(/,/g, ""));
}

test("the minified, gzipped bundle stays within 15 KB", () => {
  assert.ok(size.gzipBytes > 1000, "the measurement looks wrong: " + size.gzipBytes);
  assert.ok(size.gzipBytes <= 15 * 1024, `${size.gzipBytes} bytes gzipped is over the 15 KB budget`);
});

test("the e2ee module, its dependencies included, stays within 48 KB", () => {
  assert.ok(size.e2ee.gzipBytes > 10000, "the measurement looks wrong: " + size.e2ee.gzipBytes);
  assert.ok(size.e2ee.gzipBytes <= 48 * 1024, `${size.e2ee.gzipBytes} bytes gzipped is over the 48 KB budget`);
});

test("the README's size figures are the measured ones (within 2%)", () => {
  for (const [marker, got] of [["\\*\\*Size:", size.gzipBytes], ["\\*\\*The e2ee module:", size.e2ee.gzipBytes]]) {
    const want = stated(marker);
    assert.ok(Math.abs(got - want) <= want * 0.02, `README says ${want} bytes after ${marker}, the build measures ${got}: update the README`);
  }
});
