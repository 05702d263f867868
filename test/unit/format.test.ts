import { test } from "node:test";
import assert from "node:assert/strict";
import { describeSkipped, formatBytes } from "../../src/core/format";

test("byte counts in binary units, whole where exact", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1024 * 1024), "1 MB");
  assert.equal(formatBytes(1.5 * 1024 ** 3), "1.5 GB");
  assert.equal(formatBytes(391_606_169), "373 MB");
});

test("skipped files by reason, or none", () => {
  assert.equal(describeSkipped({ binary: 2, too_large: 1, empty: 0 }), "binary 2, too large 1");
  assert.equal(describeSkipped({}), "none");
});
