import assert from "node:assert/strict";
import { describeBackends } from "./_backends.ts";
import { calibratedGrid, calibrateGrid } from "../attention/calibrate_grid.ts";
import { defaultLeanGrid } from "../attention/lean.ts";
import { ArgumentError } from "../tensor/errors.ts";

describeBackends("calibrateGrid times each candidate and caches the fastest", async (b) => {
  // Candidates equal to the current default keep the process-wide default unchanged for
  // the other tests of this run, while still exercising timing, choice and cache.
  const d = defaultLeanGrid(b);
  const c = await calibrateGrid(b, { keys: 96, heads: 2, reps: 2, candidates: [d, d] });
  assert.deepEqual(c.times.map((t) => t.grid), [d, d]);
  assert(c.times.every((t) => Number.isFinite(t.ms) && t.ms >= 0), JSON.stringify(c.times));
  assert.equal(c.grid, d);
  assert.equal(calibratedGrid(b), d);
  assert.equal(defaultLeanGrid(b), d);
  const stamps = (b as unknown as { features?: { timestamps?: boolean } }).features?.timestamps;
  assert.equal(c.timing, stamps === true ? "timestamps" : "wall");
  const before = b.memory().liveBytes;
  await assert.rejects(() => calibrateGrid(b, { reps: 0 }), ArgumentError);
  await assert.rejects(() => calibrateGrid(b, { candidates: [] }), ArgumentError);
  await assert.rejects(() => calibrateGrid(b, { candidates: [2, 1.5] }), ArgumentError);
  assert.equal(b.memory().liveBytes, before, "a refused calibration leaks nothing");
});
