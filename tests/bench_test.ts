/**
 * Smoke tests of the benchmark harness's pieces (quick, software adapters welcome): flag
 * parsing and the cases they expand to, the skip rules, the streaming-read kernel (it reads
 * every word exactly once), the in-memory ONNX model (ORT runs it and agrees with the float64
 * reference), the results-file shape, the plot from a fixture, the Python peer's fallback, and
 * `deno task bench --smoke` end to end on the CPU and (when an adapter exists) on WebGPU.
 */
import { deepStrictEqual, match, ok } from "node:assert/strict";
import fc from "fast-check";
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
import { bindingChunks, ceilingSums, measureCeiling, median } from "../bench/_ceiling.ts";
import { type Results, type Row, validateResults } from "../bench/_results.ts";
import { renderPlot, speedups } from "../bench/plot.ts";
import { encodeModel, ProtoWriter } from "../bench/peers/_onnx_proto.ts";
import { parseTorchOutput, runTorchPeer } from "../bench/_torch.ts";
import { referenceRow, sampleHeads } from "../bench/bench.ts";
import { deviceSlug } from "../bench/_report.ts";
import { splitRanges } from "../bench/_cpu_bench.ts";
import { gpuTimesInterleaved, roundOrder } from "../bench/_timing.ts";
import { webgpu } from "../backends/webgpu/webgpu_backend.ts";
import { tensor } from "../tensor/creation.ts";
import { add, mul } from "../ops/binary.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { referenceAttention } from "../testing/reference.ts";
import { normals } from "../tensor/random.ts";

const K = 1024;

function assert(cond: unknown, msg?: string): asserts cond {
  ok(cond, msg);
}
function assertEquals(got: unknown, want: unknown, msg?: string): void {
  deepStrictEqual(got, want, msg);
}
function assertMatch(s: string, re: RegExp): void {
  match(s, re);
}
function assertThrows(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls: new (...a: any[]) => Error,
  includes?: string,
): void {
  try {
    fn();
  } catch (e) {
    assert(e instanceof cls, `expected ${cls.name}, got ${e}`);
    if (includes) assert(e.message.includes(includes), `"${e.message}" lacks "${includes}"`);
    return;
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}

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
  assertEquals(parseArgs(["--cpu"]).algos, ["lean", "flash"]);
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
  assertMatch(naiveSkipReason({ ...c, N: 4 * K }, { ...lim, partBytes: 65536 })!, /--split/);
  // Ragged rows count only the valid keys as bytes read.
  const r = { ...c, B: 2, N: 100, kvLens: [100, 30] };
  assertEquals(readBytes(r), 2 * 130 * 32 * 128 * 2);
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

Deno.test("roundOrder: a permutation each round; neighbours vary (each pair once for 4 algorithms)", () => {
  for (let n = 1; n <= 7; n++) {
    const seen = new Map<string, number>();
    for (let r = 0; r < 4; r++) {
      const row = roundOrder(n, r);
      deepStrictEqual([...row].sort((a, b) => a - b), [...Array(n).keys()], `n ${n} round ${r}`);
      for (let i = 1; i < n; i++) {
        const k = `${row[i - 1]}>${row[i]}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
    }
    // No algorithm always follows the same one (with 3 or more to choose from).
    for (let b = 0; n >= 3 && b < n; b++) {
      const before = [...seen.keys()].filter((k) => k.endsWith(`>${b}`));
      ok(before.length >= 2, `n ${n}: algorithm ${b} follows only ${before}`);
    }
    if (n === 4) {
      deepStrictEqual(seen.size, 12, "every ordered pair of 4 once");
      ok([...seen.values()].every((c) => c === 1), JSON.stringify([...seen]));
    }
  }
});

Deno.test("bindingChunks: chunks cover every range, each aligned and within the limit", () => {
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 4 }),
    fc.integer({ min: 1, max: 40 }),
    (sizes, maxUnits) => {
      const ranges = sizes.map((s) => ({ buffer: { size: s * 16 } as GPUBuffer }));
      const max = maxUnits * 100 + 260; // not a multiple of the alignment on purpose
      const chunks = bindingChunks(ranges, max, 256);
      for (const c of chunks) {
        assert(c.size <= max && c.size % 16 === 0 && c.offset % 256 === 0 && c.size > 0);
      }
      for (const r of ranges) {
        const mine = chunks.filter((c) => c.buffer === r.buffer);
        assertEquals(mine.reduce((a, c) => a + c.size, 0), r.buffer.size);
      }
    },
  ));
});

Deno.test("splitRanges: CPU read parts cover the bytes once", () => {
  const buf = new SharedArrayBuffer(4096);
  const parts = splitRanges([{ buf, off: 0, len: 1000 }, { buf, off: 2048, len: 1004 }], 3);
  assertEquals(parts.flat().reduce((a, r) => a + r.len, 0), 2004);
  assert(parts.length <= 3);
  assert(parts.flat().every((r) => r.off % 4 === 0 && r.len % 4 === 0));
});

// One adapter and device for every GPU test, kept alive for the whole file: Deno's wgpu panics
// when a device outlives the JS adapter object it came from and ORT asks about the adapter.
let shared: Promise<{ adapter: GPUAdapter; device: GPUDevice } | null> | null = null;

function gpuDevice(): Promise<{ adapter: GPUAdapter; device: GPUDevice } | null> {
  return shared ??= (async () => {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) {
      if (Deno.env.get("CI") === "true") throw new Error("CI=true but no WebGPU adapter");
      return null;
    }
    const features = (["timestamp-query", "shader-f16"] as GPUFeatureName[]).filter((f) =>
      adapter.features.has(f)
    );
    return { adapter, device: await adapter.requestDevice({ requiredFeatures: features }) };
  })();
}

/** The shared device, or null after a printed skip (under `CI=true` no adapter throws). */
async function gpuOrSkip(): Promise<GPUDevice | null> {
  const g = await gpuDevice();
  if (!g) console.warn("  (no WebGPU adapter: skipped)");
  return g?.device ?? null;
}

const gpuTest = (name: string, fn: (d: GPUDevice) => Promise<void>) =>
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const d = await gpuOrSkip();
      if (d) await fn(d);
    },
  });

gpuTest("gpuTimesInterleaved: one chain timed between marks, every call timed", async () => {
  const b = await webgpu();
  try {
    const x = tensor(normals(4096, 3), { shape: [4096], backend: b });
    // Two "algorithms" whose outputs feed the next call (a cheap and a 3× dearer one).
    const cheap = (q?: Tensor) => add(q ?? x, x);
    const dear = (q?: Tensor) => {
      const a = mul(q ?? x, x);
      const c = add(a, x);
      a.dispose();
      const d = add(c, x);
      c.dispose();
      return d;
    };
    const t = await gpuTimesInterleaved(b, [cheap, dear], 8, 1);
    for (const r of t) {
      ok(r !== null && r.chained, `timed by the chain: ${JSON.stringify(r)}`);
      ok(r.ms > 0 && Number.isFinite(r.ms));
    }
    deepStrictEqual(t.map((r) => r!.passes), [1, 3]);
    x.dispose();
  } finally {
    b.destroy();
  }
});

gpuTest("ceiling kernel reads every 32-bit word exactly once (sums match the CPU)", async (dev) => {
  const seed = 0x5eed;
  let s = seed;
  // 10_000 vec4s over 3 workgroups: three unrolled trips and a tail per thread.
  for (const [nVec4, wg] of [[10_000, 3], [4096, 1], [100, 2]]) {
    const words = new Uint32Array(nVec4 * 4).map(
      () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0),
    );
    const buffer = dev.createBuffer({
      size: words.byteLength + 256,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    dev.queue.writeBuffer(buffer, 256, words);
    const got = await ceilingSums(dev, { buffer, offset: 256, size: words.byteLength }, wg);
    const stride = wg * 256;
    const want = new Uint32Array(wg);
    for (let t = 0; t < stride; t++) {
      const acc = [0, 0, 0, 0];
      for (let i = t; i < nVec4; i += stride) {
        for (let l = 0; l < 4; l++) acc[l] = (acc[l] + words[4 * i + l]) >>> 0;
      }
      const g = Math.floor(t / 256);
      want[g] = (want[g] + ((acc[0] ^ acc[1] ^ acc[2] ^ acc[3]) >>> 0)) >>> 0;
    }
    assertEquals([...got], [...want], `nVec4 ${nVec4}, workgroups ${wg}`);
    buffer.destroy();
  }
});

gpuTest("measureCeiling reports bytes, a positive time and consistent GB/s", async (dev) => {
  const a = dev.createBuffer({ size: 1 << 20, usage: GPUBufferUsage.STORAGE });
  const b = dev.createBuffer({ size: 1 << 19, usage: GPUBufferUsage.STORAGE });
  const r = await measureCeiling(dev, [{ buffer: a }, { buffer: b, size: 1000 }], { reps: 3 });
  assertEquals(r.bytes, (1 << 20) + 992);
  assert(r.gpuMs > 0 && Number.isFinite(r.gpuMs));
  assert(Math.abs(r.gbs - r.bytes / (r.gpuMs * 1e6)) < 1e-9 * r.gbs);
  assertEquals(r.timing, dev.features.has("timestamp-query") ? "timestamp" : "wall");
});

Deno.test("ProtoWriter: varints, floats and nested messages in wire format", () => {
  assertEquals([...new ProtoWriter().varint(300).finish()], [0xac, 0x02]);
  assertEquals([...new ProtoWriter().int(1, 150).finish()], [0x08, 0x96, 0x01]);
  assertEquals([...new ProtoWriter().string(2, "hi").finish()], [0x12, 2, 0x68, 0x69]);
  assertEquals([...new ProtoWriter().float(2, 1).finish()], [0x15, 0, 0, 0x80, 0x3f]);
  assertEquals(
    [...new ProtoWriter().message(3, new ProtoWriter().int(1, 1)).finish()],
    [0x1a, 2, 0x08, 1],
  );
  assertEquals([...new ProtoWriter().varint(2 ** 35).finish()], [128, 128, 128, 128, 128, 1]);
  assertThrows(() => new ProtoWriter().varint(-1), RangeError);
  const m = encodeModel({ nodes: [], inputs: [], outputs: [], opsets: [] });
  assertEquals([...m.slice(0, 2)], [0x08, 8]); // ir_version = 8 first
});

gpuTest(
  "ORT GroupQueryAttention peer agrees with the float64 reference (ragged, GQA)",
  async (dev) => {
    const { loadOrtPeer } = await import("../bench/peers/ort_webgpu.ts");
    const peer = await loadOrtPeer(dev);
    if ("absent" in peer) {
      // Only a missing timestamp feature is an acceptable reason here: ORT is a pinned import.
      assertMatch(peer.absent, /timestamp-query/);
      return;
    }
    const B = 2, Hq = 4, Hkv = 2, D = 32, N = 200, kvLens = [200, 37];
    let s = 7;
    const rnd = (n: number) =>
      new Float16Array(n).map(() =>
        ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 4 - 2
      );
    const q = rnd(B * Hq * D), k = rnd(B * Hkv * N * D), v = rnd(B * Hkv * N * D);
    const up = (x: Float16Array) => {
      const b = dev.createBuffer({
        size: x.byteLength,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      dev.queue.writeBuffer(b, 0, x as Float16Array<ArrayBuffer>);
      return b;
    };
    if (!dev.features.has("shader-f16")) return;
    const r = await peer.run({
      B,
      Hq,
      Hkv,
      D,
      N,
      kvLens,
      dtype: "float16",
      q: up(q),
      k: up(k),
      v: up(v),
      reps: 2,
      warmup: 1,
      wallCalls: 2,
    });
    const ref = referenceAttention({ q, k, v, B, Hq, Hkv, Sq: 1, N, D, kvLens });
    const refMax = ref.out.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    let diff = 0;
    for (let i = 0; i < ref.out.length; i++) diff = Math.max(diff, Math.abs(ref.out[i] - r.out[i]));
    // float16 output rounding plus float16 arithmetic inside ORT, over up to N terms.
    const tol = 2 ** -10 * refMax * (1 + Math.log2(N));
    assert(diff <= tol, `max abs diff ${diff} > ${tol}`);
    assert(r.passes >= 1);
    assert(r.gpuMs !== null && r.gpuMs > 0);
    assert(r.wallMs > 0);
  },
);

function fixture(): Results {
  const rows: Row[] = [];
  const base = { dtype: "float16" as const, D: 128, Hq: 32 };
  for (const [B, Hkv] of [[1, 32], [4, 8]]) {
    for (const N of [1024, 4096, 65536]) {
      const lean = 0.01 * N / 1024;
      for (const [algo, f] of [["lean", 1], ["flash", 2], ["ort-webgpu", 3]] as const) {
        rows.push({
          algo,
          ...base,
          B,
          Hkv,
          N,
          gpuMs: lean * f,
          wallMs: lean * f + 0.01,
          effGBs: 1,
        });
      }
    }
  }
  rows.push({
    algo: "lean",
    ...base,
    B: 4,
    Hkv: 8,
    N: 131072,
    kvLens: [512, 2048, 131072, 1024],
    gpuMs: 1,
    wallMs: 1,
    effGBs: 1,
  });
  rows.push({
    algo: "flash",
    ...base,
    B: 4,
    Hkv: 8,
    N: 131072,
    kvLens: [512, 2048, 131072, 1024],
    gpuMs: 5,
    wallMs: 5,
    effGBs: 1,
  });
  rows.push({
    algo: "torch-flash",
    ...base,
    B: 1,
    Hkv: 32,
    N: 1024,
    gpuMs: null,
    wallMs: null,
    effGBs: null,
    absent: "no torch",
  });
  rows.push({
    algo: "naive",
    ...base,
    B: 1,
    Hkv: 32,
    N: 1 << 20,
    gpuMs: null,
    wallMs: null,
    effGBs: null,
    skipped: "too big",
  });
  return {
    device: "Fixture GPU <1>",
    date: "2026-11-25T00:00:00Z",
    deno: "2.9.6",
    ceilingGBs: 3000,
    rows,
  };
}

Deno.test("plot: speed-ups from a fixture, one line per config, one panel per comparison", () => {
  const res = validateResults(JSON.parse(JSON.stringify(fixture())));
  const flash = speedups(res.rows, "flash");
  assertEquals([...flash.keys()].sort(), ["B1 Hq32 Hkv32 D128 f16", "B4 Hq32 Hkv8 D128 f16"]);
  const b4 = flash.get("B4 Hq32 Hkv8 D128 f16")!;
  assertEquals(b4.map((p) => p.N), [1024, 4096, 65536, 131072]);
  assert(b4.slice(0, 3).every((p) => Math.abs(p.speedup - 2) < 1e-12 && !p.ragged));
  assertEquals(b4[3], { N: 131072, speedup: 5, ragged: true });
  assertEquals(speedups(res.rows, "torch-flash").size, 0);
  const svg = renderPlot(res);
  assertMatch(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert(svg.trimEnd().endsWith("</svg>"));
  assertEquals((svg.match(/<polyline /g) ?? []).length, 4); // 2 configs × (flash, ort-webgpu)
  assertMatch(svg, /lean vs flash</);
  assertMatch(svg, /lean vs ort-webgpu</);
  assert(!svg.includes("lean vs torch-flash"));
  assert(svg.includes("Fixture GPU &lt;1&gt;"), "text is escaped");
  // Balanced tags: every opened element is closed or self-closed.
  const opens = (svg.match(/<(g|svg|polyline|circle|path|text)(\s[^>]*)?>/g) ?? [])
    .filter((t) => !t.endsWith("/>")).length;
  const closes = (svg.match(/<\/(g|svg|polyline|circle|path|text)>/g) ?? []).length;
  assertEquals(opens, closes);
});

Deno.test("validateResults: rejects files missing what the plot needs", () => {
  assertThrows(() => validateResults({}), Error, "device");
  const f = fixture() as unknown as Record<string, unknown>;
  assertThrows(() => validateResults({ ...f, ceilingGBs: "fast" }), Error, "ceilingGBs");
  assertThrows(
    () => validateResults({ ...f, rows: [{ ...fixture().rows[0], gpuMs: "1" }] }),
    Error,
    "gpuMs",
  );
});

Deno.test("referenceRow: periodic K/V rows match the float64 reference (GQA, ragged)", () => {
  const c = {
    dtype: "float32" as const,
    D: 8,
    B: 3,
    Hq: 6,
    Hkv: 2,
    N: 50,
    kvLens: [50, 7, 0],
    ragged: "t",
  };
  const P = 8 * 13; // a period of 13 key rows: K repeats along and across heads
  const kBase = Float32Array.from(normals(P, 11));
  const vBase = Float32Array.from(normals(P, 12));
  const q = Float32Array.from(normals(c.B * c.Hq * c.D, 13));
  const n = c.B * c.Hkv * c.N * c.D;
  const k = Float32Array.from({ length: n }, (_, i) => kBase[i % P]);
  const v = Float32Array.from({ length: n }, (_, i) => vBase[i % P]);
  const ref = referenceAttention({ q, k, v, ...c, Sq: 1 });
  for (let b = 0; b < c.B; b++) {
    for (let h = 0; h < c.Hq; h++) {
      const row = referenceRow(c, b, h, q, kBase, vBase);
      for (let d = 0; d < c.D; d++) {
        const want = ref.out[(b * c.Hq + h) * c.D + d];
        assert(Math.abs(row[d] - want) <= 1e-12, `b${b} h${h} d${d}: ${row[d]} vs ${want}`);
      }
    }
  }
  assertEquals(sampleHeads(c), [[0, 0], [0, 5]]);
  assertEquals(sampleHeads({ ...c, kvLens: undefined }), [[0, 0], [2, 5]]);
});

Deno.test("referenceRow: K/V split in parts, each tiled from the block's start", () => {
  const c = { dtype: "float32" as const, D: 4, B: 2, Hq: 4, Hkv: 2, N: 37 };
  const P = 4 * 7;
  const kBase = Float32Array.from(normals(P, 21));
  const vBase = Float32Array.from(normals(P, 22));
  const q = Float32Array.from(normals(c.B * c.Hq * c.D, 23));
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 1, max: c.N - 1 }), { maxLength: 4 }),
      fc.array(fc.integer({ min: 0, max: c.N }), { minLength: c.B, maxLength: c.B }),
      (cutsRaw, kvLens) => {
        const cuts = [0, ...cutsRaw.sort((a, b) => a - b), c.N];
        const ranges = cuts.slice(1).map((n1, i) => [cuts[i], n1] as [number, number]);
        // The logical [B, Hkv, N, D] arrays the parts hold.
        const n = c.B * c.Hkv * c.N * c.D;
        const k = new Float32Array(n), v = new Float32Array(n);
        for (let o = 0; o < c.B * c.Hkv; o++) {
          for (const [n0, n1] of ranges) {
            for (let j = n0; j < n1; j++) {
              for (let d = 0; d < c.D; d++) {
                const src = ((o * (n1 - n0) + j - n0) * c.D + d) % P;
                k[(o * c.N + j) * c.D + d] = kBase[src];
                v[(o * c.N + j) * c.D + d] = vBase[src];
              }
            }
          }
        }
        const cc = { ...c, kvLens };
        const ref = referenceAttention({ q, k, v, ...cc, Sq: 1 });
        for (let b = 0; b < c.B; b++) {
          for (let h = 0; h < c.Hq; h++) {
            const row = referenceRow(cc, b, h, q, kBase, vBase, ranges);
            for (let d = 0; d < c.D; d++) {
              const want = ref.out[(b * c.Hq + h) * c.D + d];
              assert(Math.abs(row[d] - want) <= 1e-12, `b${b} h${h} d${d}: ${row[d]} vs ${want}`);
            }
          }
        }
      },
    ),
    { numRuns: 40 },
  );
});

Deno.test("deviceSlug and median", () => {
  assertEquals(deviceSlug("NVIDIA H100 80GB HBM3 (Vulkan)"), "nvidia-h100-80gb-hbm3");
  assertEquals(deviceSlug("(???)"), "gpu");
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 2, 3]), 2.5);
});

Deno.test({
  name: "torch peer: absent with a reason when python3, torch or CUDA is missing",
  sanitizeResources: false,
  fn: async () => {
    const missing = await runTorchPeer([], ["torch-flash"], {
      reps: 1,
      warmup: 0,
      python: "/nonexistent/python3",
    });
    assertMatch(missing.absent!, /cannot start/);
    let hasPython = true;
    try {
      await new Deno.Command("python3", { args: ["-c", "0"] }).output();
    } catch {
      hasPython = false;
    }
    if (!hasPython) return;
    const syntax = await new Deno.Command("python3", {
      args: [
        "-c",
        "import ast,sys; ast.parse(open(sys.argv[1]).read())",
        "bench/peers/torch_sdpa.py",
      ],
    }).output();
    assertEquals(syntax.code, 0, new TextDecoder().decode(syntax.stderr));
    const r = await runTorchPeer(
      [{ dtype: "float16", D: 64, B: 1, Hq: 4, Hkv: 2, N: 128 }],
      ["torch-flash"],
      { reps: 2, warmup: 1 },
    );
    // Either torch ran on a GPU, or the reason it could not is given.
    assert(r.absent !== undefined || r.rows.length === 1, JSON.stringify(r));
  },
});

/** A stand-in `torch` package: enough API for torch_sdpa.py's control flow, no numbers. */
const FAKE_TORCH: Record<string, string> = {
  "torch/__init__.py": `
__version__ = "0.0-fake"
float16 = "f16"
float32 = "f32"
class _T:
    def __init__(self, shape): self.shape = tuple(shape)
    def float(self): return self
    def repeat_interleave(self, g, dim):
        s = list(self.shape); s[dim] *= g; return _T(s)
    def transpose(self, a, b):
        s = list(self.shape); s[a], s[b] = s[b], s[a]; return _T(s)
    def __matmul__(self, o): return _T(self.shape[:-1] + o.shape[-1:])
    def __truediv__(self, x): return self
    def __sub__(self, o): return self
    def __lt__(self, o): return self
    def __getitem__(self, k): return self
    def __invert__(self): return self
    def view(self, *s): return _T(s)
    def masked_fill(self, m, v): return self
    def abs(self): return self
    def max(self): return 0.5
    def clamp_(self, lo, hi): return self
def mm(a, b): return _T(a.shape[:-1] + b.shape[-1:])
def randn(*shape, dtype=None, device=None, generator=None): return _T(shape)
def tensor(x, device=None): return _T([len(x)])
def arange(n, device=None): return _T([n])
def softmax(x, dim): return x
def device(name): return name
class Generator:
    def __init__(self, device=None): pass
    def manual_seed(self, s): return self
class cuda:
    is_available = staticmethod(lambda: True)
    synchronize = staticmethod(lambda: None)
    get_device_name = staticmethod(lambda: "Fake GPU")
    empty_cache = staticmethod(lambda: None)
    class Event:
        def __init__(self, enable_timing=False): pass
        def record(self): pass
        def elapsed_time(self, other): return 0.25
    class Stream:
        def wait_stream(self, other): pass
    current_stream = staticmethod(lambda: cuda.Stream())
    class stream:
        def __init__(self, s): pass
        def __enter__(self): return self
        def __exit__(self, *a): return False
    class CUDAGraph:
        def replay(self): pass
    class graph:
        def __init__(self, g): pass
        def __enter__(self):
            from torch.nn.attention import current
            if current[0] == "EFFICIENT_ATTENTION":
                raise RuntimeError("capture not supported here")
            return self
        def __exit__(self, *a): return False
`,
  "torch/nn/__init__.py": "",
  "torch/nn/functional.py": `
def scaled_dot_product_attention(q, k, v, attn_mask=None, enable_gqa=False):
    from torch.nn.attention import current
    if current[0] == "FLASH_ATTENTION" and attn_mask is not None:
        raise RuntimeError("No available kernel. Aborting execution.")
    if current[0] == "CUDNN_ATTENTION" and enable_gqa:
        raise RuntimeError("cuDNN refuses enable_gqa")
    if q.shape[1] != k.shape[1] and not enable_gqa:
        raise RuntimeError("head counts differ")
    return q
`,
  "torch/nn/attention/__init__.py": `
import contextlib, enum
class SDPBackend(enum.Enum):
    CUDNN_ATTENTION = 1
    FLASH_ATTENTION = 2
    EFFICIENT_ATTENTION = 3
current = [None]
@contextlib.contextmanager
def sdpa_kernel(b):
    current[0] = b.name
    yield
    current[0] = None
`,
};

Deno.test({
  name: "torch peer: GQA fallback, mask refusal and the JSON-lines protocol (stand-in torch)",
  sanitizeResources: false,
  fn: async () => {
    try {
      await new Deno.Command("python3", { args: ["-c", "0"] }).output();
    } catch {
      console.warn("  (no python3: skipped)");
      return;
    }
    const dir = await Deno.makeTempDir();
    for (const [path, text] of Object.entries(FAKE_TORCH)) {
      await Deno.mkdir(`${dir}/${path.split("/").slice(0, -1).join("/")}`, { recursive: true });
      await Deno.writeTextFile(`${dir}/${path}`, text);
    }
    const old = Deno.env.get("PYTHONPATH");
    Deno.env.set("PYTHONPATH", dir);
    try {
      const algos = ["torch-cudnn", "torch-flash", "torch-efficient"];
      const r = await runTorchPeer(
        [
          { dtype: "float16", D: 64, B: 1, Hq: 4, Hkv: 4, N: 128 },
          { dtype: "float16", D: 64, B: 2, Hq: 4, Hkv: 2, N: 300, kvLens: [300, 20] },
        ],
        algos,
        { reps: 3, warmup: 1, budgetS: 60 },
      );
      assertEquals(r.absent, undefined);
      assertEquals(r.cutShort, undefined);
      assertEquals([r.version, r.device], ["0.0-fake", "Fake GPU"]);
      assertEquals(r.rows.length, 6);
      const get = (c: number, a: string) => r.rows.find((x) => x.case === c && x.algo === a)!;
      // Calls under 0.5 ms by events (the stand-in's 0.25) are timed again as a CUDA graph of
      // 10 calls (0.25 per replay: 0.025 a call); where capture fails the events' time stays.
      for (const a of ["torch-cudnn", "torch-flash"]) {
        assertEquals([get(0, a).gpuMs, get(0, a).maxAbsDiff], [0.025, 0.5]);
        assertEquals(get(0, a).note, "gpuMs by a CUDA graph of 10 calls");
        assert(get(0, a).wallMs! >= 0);
      }
      assertEquals(get(0, "torch-efficient").gpuMs, 0.25);
      assertMatch(
        get(0, "torch-efficient").note!,
        /^gpuMs by events per call \(CUDA graph capture failed: capture not supported here\)$/,
      );
      assertEquals(
        get(1, "torch-efficient").note,
        "GQA by enable_gqa=True; ragged via boolean attn_mask over the padded N; " +
          "gpuMs by events per call (CUDA graph capture failed: capture not supported here)",
      );
      assertMatch(
        get(1, "torch-cudnn").note!,
        /^GQA by repeat_interleave .*cuDNN refuses enable_gqa/,
      );
      assertEquals(get(1, "torch-flash").gpuMs, null);
      assertMatch(
        get(1, "torch-flash").absent!,
        /FLASH_ATTENTION cannot run this case: No available kernel/,
      );
    } finally {
      if (old === undefined) Deno.env.delete("PYTHONPATH");
      else Deno.env.set("PYTHONPATH", old);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("parseTorchOutput: a run cut short keeps its rows and says why", () => {
  const lines = [
    JSON.stringify({ torch: "2.11", device: "H100" }),
    JSON.stringify({ row: { case: 0, algo: "torch-flash", gpuMs: 0.1, wallMs: 0.2 } }),
    '{"row": {"case": 1, "alg', // killed mid-line
  ].join("\n");
  const r = parseTorchOutput(lines, 137, true, 30);
  assertEquals(r.rows.length, 1);
  assertEquals(r.version, "2.11");
  assertMatch(r.cutShort!, /30 s budget/);
  assertEquals(parseTorchOutput("", 1).absent, "torch_sdpa.py exited 1 before finishing");
  assertEquals(
    parseTorchOutput(JSON.stringify({ absent: "no CUDA" }), 0).absent,
    "no CUDA",
  );
});

async function runBench(args: string[]): Promise<{ code: number; out: string; res: Results }> {
  const dir = await Deno.makeTempDir();
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/bench.ts", ...args, "--out", dir],
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(p.stdout) + new TextDecoder().decode(p.stderr);
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  const json = files.find((f) => f.endsWith(".json"));
  assert(json, `no JSON written (exit ${p.code}):\n${out}`);
  assert(files.includes(json.replace(/\.json$/, ".svg")), `no SVG beside ${json}`);
  const res = validateResults(JSON.parse(await Deno.readTextFile(`${dir}/${json}`)));
  await Deno.remove(dir, { recursive: true });
  return { code: p.code, out, res };
}

Deno.test({
  name: "bench --cpu --smoke: runs end to end, writes JSON + SVG, lean agrees with flash",
  sanitizeResources: false,
  fn: async () => {
    const { code, out, res } = await runBench(["--cpu", "--smoke"]);
    assertEquals(code, 0, out);
    assertEquals(res.backend, "cpu");
    assertEquals(res.rows.length, 2 * 2);
    for (const r of res.rows) {
      assert(r.error === undefined, `${r.algo}: ${r.error}`);
      assert(r.wallMs! > 0 && r.effGBs! > 0 && r.fracCeiling! > 0);
    }
    assert(res.rows.some((r) => r.kvLens !== undefined));
  },
});

Deno.test({
  name: "bench --smoke on WebGPU: every algorithm checked against flash and timed",
  sanitizeResources: false,
  fn: async () => {
    if (!(await gpuOrSkip())) return;
    const { code, out, res } = await runBench([
      "--smoke",
      "--algos",
      "lean,flash,flash-decoding,naive,ort-webgpu",
      "--no-peers",
    ]);
    assertEquals(code, 0, out);
    assertEquals(res.backend, "webgpu");
    assert(res.ceilingGBs > 0);
    assertEquals(res.rows.length, 2 * 4);
    for (const r of res.rows) {
      assert(
        r.error === undefined && r.skipped === undefined,
        `${r.algo}: ${r.error ?? r.skipped}`,
      );
      assert(r.gpuMs! > 0 && r.wallMs! > 0, `${r.algo} timed`);
      assert(r.refDiff! <= r.tol!, `${r.algo} checked against float64`);
      assert(r.maxAbsDiff! <= r.tol!, `${r.algo} agrees with flash`);
      assert(r.fracCeiling! > 0 && r.ceilingGBs! > 0);
    }
    assertMatch(out, /\[\s*1\/2\]/);
  },
});

Deno.test({
  name: "bench --smoke --part-bytes on WebGPU: split K/V run per part, checked and timed",
  sanitizeResources: false,
  fn: async () => {
    if (!(await gpuOrSkip())) return;
    // 64 KiB parts: the N=512 case's 128 KiB K/V in 2 parts, the ragged N=300 one in 3 parts
    // of 100 keys (not a multiple of the input block, so a misplaced part fails the check).
    const { code, out, res } = await runBench([
      "--smoke",
      "--part-bytes",
      "65536",
      "--algos",
      "lean,flash,flash-decoding,naive",
      "--no-peers",
    ]);
    assertEquals(code, 0, out);
    assertMatch(out, /\(K\/V in 2 parts\)/);
    assertMatch(out, /\(K\/V in 3 parts\)/);
    assertEquals(res.rows.length, 2 * 4);
    for (const r of res.rows) {
      assert(r.error === undefined, `${r.algo}: ${r.error}`);
      if (r.algo === "naive") {
        assertMatch(r.skipped ?? "", /one buffer.*stored across buffers/);
        continue;
      }
      assert(r.skipped === undefined, `${r.algo}: ${r.skipped}`);
      assert(r.gpuMs! > 0 && r.wallMs! > 0 && r.passes! > 1, `${r.algo} timed over its passes`);
      assert(r.refDiff! <= r.tol!, `${r.algo} checked against float64`);
      assert(r.maxAbsDiff! <= r.tol!, `${r.algo} agrees with flash`);
      assert(r.fracCeiling! > 0 && r.ceilingGBs! > 0);
      assertMatch(r.note ?? "", /stored in [23] buffers/);
    }
  },
});
