/**
 * Tests of the benchmark's sweep (bench/_sweep.ts): flag parsing and the cases they expand
 * to, the skip rules and the time budget.
 */
import fc from "npm:fast-check@4.10.2";
import {
  buildCases,
  estimateCaseS,
  fmtCount,
  isHeadline,
  kvBytes,
  kvSplit,
  naiveSkipReason,
  parseArgs,
  parseCount,
  readBytes,
  repsFor,
  skipReason,
} from "../bench/_sweep.ts";
import { allocatedBytes, caseMemory, deviceMemoryOf, MEMORY_HEADROOM } from "../bench/_memory.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./_bench.ts";

const K = 1024;

Deno.test("parseArgs: the default sweep is the issue's grid, flags narrow it", () => {
  const all = parseArgs([]);
  const cases = buildCases(all);
  // 2 dtypes × 2 head dims × (7 configs × 6 lengths + 2 ragged lists × 2 head configs).
  assertEquals(cases.length, 2 * 2 * (7 * 6 + 2 * 2));
  // The headline comparison (lean vs flash at B=1, N=512k, 4 GiB K in f16) runs first.
  assert(isHeadline(cases[0]), JSON.stringify(cases[0]));
  assertEquals(cases.filter(isHeadline).length, 1);
  assertEquals(new Set(cases.map((c) => c.N)).size > 6, true);
  assert(cases.some((c) => c.kvLens?.join() === [512, 2 * K, 128 * K, 1 * K].join()));
  assert(cases.some((c) => c.kvLens?.length === 16 && c.kvLens[0] === 64 * K));

  const o = parseArgs([
    "--dtype",
    "f16",
    "--d=64",
    "--n",
    "4k,1m",
    "--configs",
    "4x32x8,ragged-b:32x8",
  ]);
  const cs = buildCases(o);
  assertEquals(cs.map((c) => [c.dtype, c.D, c.B, c.Hq, c.Hkv, c.N]), [
    ["float16", 64, 4, 32, 8, 4 * K],
    ["float16", 64, 4, 32, 8, K * K],
    ["float16", 64, 16, 32, 8, 64 * K],
  ]);
  assertEquals(parseArgs(["--algos", "lean,ort-webgpu", "--no-peers"]).peers, false);
  assertEquals(parseArgs(["--out", "/tmp/x"]).out, "/tmp/x");

  const quick = buildCases(parseArgs(["--quick"]));
  assert(quick.every((c) => c.dtype === "float16" && c.D === 128));
  assertEquals(new Set(quick.filter((c) => !c.kvLens).map((c) => c.N)), new Set([4 * K, 64 * K]));
  assertEquals(quick.filter((c) => c.kvLens).length, 1);
  const smoke = parseArgs(["--smoke"]);
  assertEquals(smoke.reps, 3);
  assert(buildCases(smoke).every((c) => kvBytes(c) < 1 << 20));
  assertEquals(parseArgs(["--cpu"]).algos, ["lean", "flash", "ort-cpu"]);
  assertEquals(parseArgs(["--cpu", "--smoke"]).peers, false);
});

Deno.test("parseArgs: bad flags throw and name the flag", () => {
  assertThrows(() => parseArgs(["--frobnicate"]), Error, "--frobnicate");
  assertThrows(() => parseArgs(["--dtype", "bf16"]), Error, "--dtype");
  assertThrows(() => parseArgs(["--configs", "4x30x8"]), Error, "Hq % Hkv");
  assertThrows(() => parseArgs(["--algos", "lean,fast"]), Error, "fast");
  assertThrows(() => parseArgs(["--n"]), Error, "--n needs a value");
  assertThrows(() => parseArgs(["--d", "63"]), Error, "--d");
  assertThrows(() => parseCount("4q"), Error, "4q");
  assertThrows(() => parseArgs(["--part-bytes", "8"]), Error, "--part-bytes");
  assertThrows(() => parseArgs(["--part-bytes", "100.5"]), Error, "--part-bytes");
});

Deno.test("parseCount and fmtCount round-trip", () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 1 << 24 }), (n) => {
    assertEquals(parseCount(fmtCount(n)), n);
  }));
  assertEquals(parseCount("512k"), 524288);
  assertEquals(fmtCount(2 * K * K), "2m");
});

Deno.test("skip rules: K/V over one binding run split; only what cannot be split is skipped", () => {
  const lim = { maxBufferSize: 4 * 2 ** 30, maxStorageBufferBindingSize: 2 ** 31 - 4 };
  const c = { dtype: "float16" as const, D: 128, B: 1, Hq: 32, Hkv: 32, N: 512 * K };
  assertEquals(kvBytes(c), 4 * 2 ** 30);
  // The H200 headline case: 4 GiB K over a 2 GiB − 4 B binding, 3 parts of 256-key multiples.
  assertEquals(skipReason(c, lim), null);
  assertEquals(kvSplit(c, lim), [[0, 174848], [174848, 349696], [349696, 524288]]);
  // 2 GiB exactly is 4 bytes over the binding limit: 2 parts; 1 GiB is stored whole.
  assertEquals(kvSplit({ ...c, N: 256 * K }, lim)?.length, 2);
  assertEquals(kvSplit({ ...c, N: 128 * K }, lim), null);
  // K over maxBufferSize too (8 GiB f32) still splits, within the smaller of the two limits.
  const f32 = { ...c, dtype: "float32" as const };
  assertEquals(skipReason(f32, lim), null);
  const parts = kvSplit(f32, { ...lim, maxBufferSize: 2 ** 30 })!;
  assert(parts.every(([a, b]) => (b - a) * 32 * 128 * 4 <= 2 ** 30), JSON.stringify(parts));
  assertEquals(parts.at(-1)![1], c.N);
  // One key position over the binding: no cut along N helps.
  const wide = { ...c, B: 1024, Hkv: 1024, Hq: 1024, D: 1024, N: 4 };
  assertMatch(skipReason(wide, lim)!, /one key position.*no split along N fits/);
  assertMatch(skipReason(c, { ...lim, partBytes: 4096 })!, /--part-bytes/);
  assertMatch(skipReason(c, { ...lim, budget: 6 * 2 ** 30 })!, /memory budget/);
  // Naive takes K/V whole: split K/V (by the limit or --part-bytes) are its skip reason.
  assertMatch(naiveSkipReason(c, lim)!, /one buffer.*maxStorageBufferBindingSize/);
  assertMatch(naiveSkipReason({ ...c, N: 256 * K }, lim)!, /one buffer/);
  assertMatch(naiveSkipReason({ ...c, N: 128 * K }, lim)!, /float32 K\/V/);
  assertEquals(naiveSkipReason({ ...c, N: 4 * K }, lim), null);
  assertMatch(naiveSkipReason({ ...c, N: 4 * K }, { ...lim, partBytes: 65536 })!, /--part-bytes/);
  // Ragged rows count only the valid keys as bytes read.
  const r = { ...c, B: 2, N: 100, kvLens: [100, 30] };
  assertEquals(readBytes(r), 2 * 130 * 32 * 128 * 2);
});

Deno.test("memory rule: a case runs only if all it holds at once fits 90 % of the GPU", () => {
  const lim = { maxBufferSize: 4 * 2 ** 30, maxStorageBufferBindingSize: 2 ** 31 - 4 };
  const h100 = { ...lim, budget: deviceMemoryOf("NVIDIA H100 80GB HBM3")! };
  const h200 = { ...lim, budget: deviceMemoryOf("NVIDIA H200")! };
  assertEquals(h100.budget, 81559 * 2 ** 20);
  assertEquals(deviceMemoryOf("llvmpipe (LLVM 15.0.6, 256 bits)"), undefined);
  // The case that lost the H100: (16, 32, 8) at 1M, float16, 64 GiB of K+V.
  const big = { dtype: "float16" as const, D: 128, B: 16, Hq: 32, Hkv: 8, N: 1024 * K };
  assertEquals(2 * kvBytes(big), 64 * 2 ** 30);
  // Plain rows fit (64 GiB + the pool's 1 GiB + outputs < 90 % of 79.6 GiB) ...
  assertEquals(skipReason(big, h100, ["lean", "flash", "flash-decoding"]), null);
  // ... the paged rows' caches (64 GiB each, filled from two 2 GiB chunks) or the int8 copies
  // (32 GiB of data, 1 GiB of token scales) do not.
  const paged = skipReason(big, h100, ["lean", "lean-paged16", "lean-paged256"])!;
  assertMatch(paged, /lean-paged16 cache 68\.00.*lean-paged256 cache 68\.00.*memory budget/);
  assertMatch(skipReason(big, h100, ["lean", "lean-int8"])!, /lean-int8 quantized K and V 33\.00/);
  assertEquals(skipReason(big, h200, ["lean", "lean-int8"]), null);
  // The headline case with every quantized row fits an H100 easily.
  const head = { ...big, B: 1, Hq: 32, Hkv: 32, N: 512 * K };
  assertEquals(skipReason(head, h100, ["lean", "flash", "lean-int8", "lean-float8e4m3"]), null);
  // The rule is the sum against the headroom, whatever the items.
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 16 }),
      fc.integer({ min: 1, max: 2048 * K }),
      fc.subarray(["lean", "naive", "lean-int8", "lean-float8e4m3", "lean-paged16", "ort-webgpu"]),
      (B, N, algos) => {
        const c = { dtype: "float16" as const, D: 128, B, Hq: 32, Hkv: 8, N };
        const need = caseMemory(c, algos, h100);
        assertEquals(need.total, need.items.reduce((a, [, b]) => a + b, 0));
        assert(need.total >= 2 * kvBytes(c), "K and V are counted");
        const fits = need.total <= Math.floor(MEMORY_HEADROOM * h100.budget);
        assertEquals(skipReason(c, h100, algos) === null, fits);
      },
    ),
    { seed: 0x5eed, verbose: 1 },
  );
  // Buffers as the pool rounds them: the 4 GiB K in 3 parts of ≈1.33 GiB take 1.5 GiB each.
  assertEquals(allocatedBytes([1, 32, 512 * K, 128], 2, lim), 3 * 1.5 * 2 ** 30);
});

Deno.test("time budget: fewer samples for long calls; the default sweep's headline fits", () => {
  assertEquals(repsFor(0.5, 20), 20);
  assertEquals(repsFor(5, 20), 20);
  assertEquals(repsFor(25, 20), 5);
  assertEquals(repsFor(8, 20), 13);
  assertEquals(repsFor(25, 3), 3);
  const o = parseArgs([]);
  const cases = buildCases(o);
  // At H200 bandwidth the headline case is expected in seconds, well inside the budget, and
  // an estimate grows with the bytes read.
  const h = estimateCaseS(cases[0], 5, o, 4400);
  assert(h > 0.5 && h < 15, `headline ${h} s`);
  const big = { ...cases[0], B: 16 };
  assert(estimateCaseS(big, 5, o, 4400) > h);
  // Before any ceiling (300 GB/s assumed) the first case still fits.
  assert(estimateCaseS(cases[0], 5, o, 300) < o.budgetS);
});
