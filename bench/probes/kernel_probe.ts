/**
 * Micro-benchmark and correctness probe of the WebGPU attention kernels, called directly
 * (`webgpuAttention`, `webgpuMergeStates`) on the library's WebGPU backend: its context (pooled
 * storage, cached pipelines), every pass timed with timestamp queries while profiling is on.
 *
 *     deno run -A bench/probes/kernel_probe.ts check            # random cases vs the float64 oracle
 *     deno run -A bench/probes/kernel_probe.ts bench [--quick]  # decode sweep vs a streaming read
 *     deno run -A bench/probes/kernel_probe.ts bench --quick-gqa --json out.json  # GQA variants
 *
 * `bench` fills K/V on the GPU (no upload), measures a streaming read of the same bytes in the
 * same run (the ceiling), then each kernel variant, and prints a table of GPU times and the
 * fraction of the ceiling; `--json FILE` writes the rows. GPU time of a call is the span from
 * its first pass's begin timestamp to its last pass's end (`… sum`: the passes' own times
 * summed). `--quick-gqa`: decode (1,32,8), (4,32,8), (16,32,8), (1,64,8), (1,32,32) at N =
 * 4k/16k/64k, the default kernel against lanes per key, keys per slot, prefetch, workgroup size
 * and lean grid variants and flash, one short table.
 *
 * @module
 */
import { uniformGenerator } from "../../tensor/random.ts";
import type { GpuContext } from "../../backends/webgpu/context.ts";
import { webgpu, type WebGpuBackend } from "../../backends/webgpu/webgpu_backend.ts";
import type { AttentionParams, DataId, TensorInfo } from "../../backends/backend.ts";
import type { DType } from "../../tensor/dtype.ts";
import {
  type AttentionTuning,
  computeUnits,
  webgpuAttention,
  webgpuMergeStates,
} from "../../backends/webgpu/internal.ts";
import { leanSchedule, splitSchedule } from "../../schedule/lean_schedule.ts";
import { plainRun } from "../../schedule/attention_plan.ts";
import { maxAbsDiff, referenceAttention } from "../../testing/reference.ts";
import { heatGpu } from "../_heater.ts";

/**
 * The library's WebGPU backend as the probe drives it: the kernels get `ctx`, the backend's own
 * context seen through a view that notes the key of every pipeline requested in `usedKeys`
 * (which kernel configuration a tuning resolved to; `PROBE_KEYS=1` prints each new key, and
 * `PROBE_DUMP=1` keeps each pipeline's WGSL to print when it fails).
 */
class Probe {
  readonly ctx: GpuContext;
  /** Keys of the pipelines requested since the last reset. */
  usedKeys: string[] = [];
  #wgsl = new Map<string, string>();

  constructor(readonly gpu: WebGpuBackend) {
    const inner = gpu.ctx;
    const keys = Deno.env.get("PROBE_KEYS");
    const dump = Deno.env.get("PROBE_DUMP");
    const pipeline = (key: string, wgsl: () => string, entryPoint?: string) => {
      this.usedKeys.push(key);
      if (keys && !this.#wgsl.has(key)) console.log(`pipeline ${key}`);
      if (!this.#wgsl.has(key)) this.#wgsl.set(key, dump ? wgsl() : "");
      return inner.pipeline(key, wgsl, entryPoint);
    };
    this.ctx = new Proxy(inner, {
      get(target, prop) {
        if (prop === "pipeline") return pipeline;
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  }

  /** A GPU error of a pipeline (the runtime reports it at a later call) and, with `PROBE_DUMP`, its WGSL. */
  explain(e: unknown): string {
    const msg = e instanceof Error ? e.message : String(e);
    const key = /pipeline (\S+?):/.exec(msg)?.[1];
    const code = key && this.#wgsl.get(key);
    if (code) console.error(code);
    return msg;
  }

  upload(values: Float32Array, dtype: DType): DataId {
    return this.gpu.upload(values, dtype);
  }

  /** Reads a tensor's values (its dtype and element count as given to `alloc`). */
  read(t: { id: DataId; dtype: DType; elements: number }): Promise<Float32Array> {
    return this.gpu.read(t.id, t.dtype, t.elements);
  }

  release(id: DataId): void {
    this.gpu.release(id);
  }

  /** Timestamps of the passes `f` dispatches (profiling on around them): ns each, with labels. */
  async timed(f: () => void): Promise<{ ns: number[]; labels: string[]; stamps: number[] }> {
    this.gpu.setProfiling(true);
    f();
    const t = await this.gpu.readTimings();
    this.gpu.setProfiling(false);
    return {
      ns: t.map((p) => p.endNs! - p.startNs!),
      labels: t.map((p) => p.label),
      stamps: t.flatMap((p) => [p.startNs!, p.endNs!]),
    };
  }
}

// ---------------------------------------------------------------- correctness

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  D: number;
  dtype: DType;
  causal: boolean;
  kvLens: number[];
  tileSize: number;
  algo: AttentionParams["algo"];
  grid: number;
  numSplits: number;
  qBlocks: number;
  kernel?: "sg" | "wgm" | "generic";
  L?: number;
  pf?: boolean;
  bf?: boolean;
  rot?: boolean;
  rs?: number;
  U?: number;
  ws?: boolean;
  wg?: number;
  tm?: boolean;
  /** The vote before the running max (`AttentionTuning.lazyMax`). */
  lz?: boolean;
  /** A NaN/±∞ written into q or k (index as a fraction of the array): non-finite scores. */
  spike?: { where: "q" | "k" | "v"; at: number; value: number };
}

/** Largest |a − b| where NaN matches NaN and equal infinities match (else NaN). */
function ieeeDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i]))) continue;
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return NaN;
    m = Math.max(m, d);
  }
  return m;
}

/** Largest finite |x|. */
function finiteMax(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i])) m = Math.max(m, Math.abs(x[i]));
  return m;
}

function drawCase(r: () => number, i: number): Case {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const Hkv = pick([1, 2, 3]);
  const group = pick([1, 2, 4, 3]);
  const D = pick([32, 64, 128, 5, 12, 96, 256, 160]);
  const N = pick([1, 7, 64, 100, 300, 513]);
  const B = pick([1, 2, 3]);
  const Sq = pick([1, 1, 1, 2, 5, 17, 70]);
  const kvLens = Array.from(
    { length: B },
    () => (r() < 0.3 ? pick([0, 1, N]) : Math.floor(r() * (N + 1))),
  );
  return {
    B,
    Hq: Hkv * group,
    Hkv,
    Sq,
    N,
    D,
    dtype: pick(["float32", "float16"] as DType[]),
    causal: r() < 0.5,
    kvLens,
    tileSize: pick([1, 16, 64, 33]),
    algo: pick(["flash", "flash-decoding", "lean", "lean"] as const),
    grid: pick([1, 3, 8, 40]),
    numSplits: pick([1, 2, 5]),
    qBlocks: Sq > 1 ? pick([1, 2, 3]) : 1,
    kernel: (["generic", undefined, "wgm"] as const)[i % 3],
    L: pick([undefined, undefined, 4, 8, 16, 32]),
    pf: r() < 0.5,
    bf: r() < 0.6,
    rot: r() < 0.5,
    // Drawn last so the earlier fields of each seed stay what they were.
    rs: pick([undefined, 2, 4, 8]),
    ws: r() < 0.5,
    spike: r() < 0.25
      ? { where: pick(["q", "k", "v"] as const), at: r(), value: pick([NaN, Infinity, -Infinity]) }
      : undefined,
  };
}

function randArr(r: () => number, n: number, dtype: DType): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * 1.5;
  if (dtype === "float16") { for (let i = 0; i < n; i++) a[i] = Math.f16round(a[i]); }
  return a;
}

async function runCase(p: Probe, c: Case, seed: number): Promise<string | null> {
  const r = uniformGenerator(seed);
  const qv = randArr(r, c.B * c.Hq * c.Sq * c.D, c.dtype);
  const kv = randArr(r, c.B * c.Hkv * c.N * c.D, c.dtype);
  const vv = randArr(r, c.B * c.Hkv * c.N * c.D, c.dtype);
  if (c.spike) {
    const a = c.spike.where === "q" ? qv : c.spike.where === "k" ? kv : vv;
    if (a.length) a[Math.floor(c.spike.at * a.length)] = c.spike.value;
  }
  const q: TensorInfo = {
    id: p.upload(qv, c.dtype),
    shape: [c.B, c.Hq, c.Sq, c.D],
    dtype: c.dtype,
  };
  const k: TensorInfo = {
    id: p.upload(kv, c.dtype),
    shape: [c.B, c.Hkv, c.N, c.D],
    dtype: c.dtype,
  };
  const v: TensorInfo = {
    id: p.upload(vv, c.dtype),
    shape: [c.B, c.Hkv, c.N, c.D],
    dtype: c.dtype,
  };
  const plan = {
    batch: c.B,
    kvHeads: c.Hkv,
    kvLens: c.kvLens,
    qBlocks: c.qBlocks,
    tileSize: c.tileSize,
  };
  const schedule = c.algo === "lean"
    ? leanSchedule({ ...plan, grid: c.grid })
    : splitSchedule({ ...plan, numSplits: c.algo === "flash" ? 1 : c.numSplits });
  const scale = 1 / Math.sqrt(c.D);
  const params: AttentionParams = plainRun({
    algo: c.algo,
    scale,
    causal: c.causal,
    kvLens: Int32Array.from(c.kvLens),
    schedule,
  });
  const tuning: AttentionTuning = {
    kernel: c.kernel,
    L: c.L,
    pf: c.pf,
    bf: c.bf,
    rot: c.rot,
    rs: c.rs,
    U: c.U,
    ws: c.ws,
    wg: c.wg,
    tailMask: c.tm,
    lazyMax: c.lz,
  };
  const rows = c.B * c.Hq * c.Sq;
  const outOf = (id: DataId) => ({ id, dtype: c.dtype, elements: rows * c.D });
  const lseOf = (id: DataId) => ({ id, dtype: "float32" as const, elements: rows });
  const res = webgpuAttention(p.ctx, q, k, v, params, tuning);
  const out = await p.read(outOf(res.out));
  const lse = await p.read(lseOf(res.lse));
  const ref = referenceAttention({
    q: qv,
    k: kv,
    v: vv,
    B: c.B,
    Hq: c.Hq,
    Hkv: c.Hkv,
    Sq: c.Sq,
    N: c.N,
    D: c.D,
    scale,
    causal: c.causal,
    kvLens: c.kvLens,
  });
  // Second run: bitwise determinism.
  const res2 = webgpuAttention(p.ctx, q, k, v, params, tuning);
  const out2 = await p.read(outOf(res2.out));
  for (const id of [q.id, k.id, v.id, res.out, res.lse, res2.out, res2.lse]) p.release(id);
  const outTol = (c.dtype === "float16" ? 2e-3 : 2e-5) * Math.max(1, finiteMax(ref.out)) *
    Math.max(1, Math.log2(c.N + 1) / 4);
  const eo = ieeeDiff(out, ref.out);
  const el = ieeeDiff(lse, ref.lse);
  const lseTol = 1e-4 * Math.max(1, finiteMax(ref.lse));
  if (Deno.env.get("PROBE_ROWS")) {
    for (let row = 0; row < lse.length; row++) {
      const e = maxAbsDiff(
        out.subarray(row * c.D, (row + 1) * c.D),
        ref.out.subarray(row * c.D, (row + 1) * c.D),
      );
      console.log(
        `row ${row}: lse ${lse[row]} ref ${ref.lse[row]} out err ${e}`,
        out.slice(row * c.D, row * c.D + 4),
        ref.out.slice(row * c.D, row * c.D + 4),
      );
    }
  }
  if (!(eo <= outTol) || !(el <= lseTol)) {
    return `out err ${eo} (tol ${outTol}), lse err ${el} (tol ${lseTol})`;
  }
  if (ieeeDiff(out, out2) !== 0) return "not deterministic";
  return null;
}

async function mergeCase(p: Probe, seed: number): Promise<string | null> {
  const r = uniformGenerator(seed);
  const rows = 1 + Math.floor(r() * 40);
  const D = [1, 7, 64, 128][Math.floor(r() * 4)];
  const k = 1 + Math.floor(r() * 7);
  const dtype: DType = r() < 0.5 ? "float16" : "float32";
  const outs: TensorInfo[] = [];
  const lses: TensorInfo[] = [];
  const ov: Float32Array[] = [];
  const lv: Float32Array[] = [];
  for (let s = 0; s < k; s++) {
    const o = randArr(r, rows * D, dtype);
    const l = Float32Array.from({ length: rows }, () => (r() < 0.15 ? -Infinity : r() * 8 - 4));
    for (let i = 0; i < rows; i++) if (l[i] === -Infinity) o.fill(0, i * D, (i + 1) * D);
    ov.push(o);
    lv.push(l);
    outs.push({ id: p.upload(o, dtype), shape: [rows, D], dtype });
    lses.push({ id: p.upload(l, "float32"), shape: [rows], dtype: "float32" });
  }
  const res = webgpuMergeStates(p.ctx, outs, lses);
  const out = await p.read({ id: res.out, dtype, elements: rows * D });
  const lse = await p.read({ id: res.lse, dtype: "float32", elements: rows });
  const refO = new Float64Array(rows * D);
  const refL = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const m = Math.max(...lv.map((l) => l[i]));
    if (m === -Infinity) {
      refL[i] = -Infinity;
      continue;
    }
    let sum = 0;
    for (let s = 0; s < k; s++) {
      const w = Math.exp(lv[s][i] - m);
      sum += w;
      for (let d = 0; d < D; d++) refO[i * D + d] += w * ov[s][i * D + d];
    }
    for (let d = 0; d < D; d++) refO[i * D + d] /= sum;
    refL[i] = m + Math.log(sum);
  }
  for (const t of [...outs, ...lses]) p.release(t.id);
  p.release(res.out);
  p.release(res.lse);
  const eo = maxAbsDiff(out, refO);
  const el = maxAbsDiff(lse, refL);
  const tol = dtype === "float16" ? 2e-3 : 1e-5;
  if (!(eo <= tol * 2) || !(el <= 1e-5 * 8)) {
    return `merge k=${k} rows=${rows} D=${D} ${dtype}: out ${eo} lse ${el}`;
  }
  return null;
}

async function check(p: Probe, count: number, seed0: number): Promise<boolean> {
  let bad = 0;
  const fixed: Case[] = [
    // decode shapes of the benchmark, small N
    {
      B: 2,
      Hq: 8,
      Hkv: 2,
      Sq: 1,
      N: 700,
      D: 128,
      dtype: "float16",
      causal: false,
      kvLens: [700, 0],
      tileSize: 64,
      algo: "lean",
      grid: 7,
      numSplits: 1,
      qBlocks: 1,
    },
    {
      B: 1,
      Hq: 4,
      Hkv: 4,
      Sq: 1,
      N: 1000,
      D: 128,
      dtype: "float16",
      causal: true,
      kvLens: [999],
      tileSize: 256,
      algo: "lean",
      grid: 9,
      numSplits: 1,
      qBlocks: 1,
    },
    {
      B: 2,
      Hq: 4,
      Hkv: 1,
      Sq: 3,
      N: 200,
      D: 64,
      dtype: "float32",
      causal: true,
      kvLens: [2, 150],
      tileSize: 16,
      algo: "flash-decoding",
      grid: 1,
      numSplits: 3,
      qBlocks: 2,
    },
  ];
  // The benchmark's GQA decode shape through the row-split and whole-subgroup variants.
  fixed.push(
    { ...fixed[0], rs: 4 },
    { ...fixed[0], rs: 2, causal: true },
    { ...fixed[0], L: 32 },
    { ...fixed[0], ws: true },
    { ...fixed[0], ws: true, rs: 4 },
    { ...fixed[1], ws: true, N: 3000, kvLens: [2999], grid: 3 },
    // Non-finite scores: a NaN q element (its row NaN), a +∞ key element (rows whose score is
    // +∞ turn NaN, −∞ ones weigh 0), a NaN in a hidden key (ignored), through each kernel.
    { ...fixed[0], spike: { where: "q", at: 0.3, value: NaN } },
    { ...fixed[0], spike: { where: "k", at: 0.2, value: Infinity } },
    { ...fixed[0], kvLens: [500, 0], spike: { where: "k", at: 0.4, value: NaN } },
    { ...fixed[0], ws: true, rs: 2, spike: { where: "k", at: 0.1, value: NaN } },
    { ...fixed[0], kernel: "wgm", spike: { where: "q", at: 0.9, value: Infinity } },
    { ...fixed[0], kernel: "generic", spike: { where: "k", at: 0.3, value: -Infinity } },
    { ...fixed[2], spike: { where: "k", at: 0.6, value: NaN } },
    // Non-finite values in keys hidden from some rows of a unit (causal, several query rows):
    // they must not reach those rows (0 · NaN).
    {
      ...fixed[2],
      Sq: 6,
      N: 64,
      D: 128,
      kvLens: [64, 40],
      algo: "flash",
      spike: { where: "v", at: 0.99, value: NaN },
    },
    {
      ...fixed[2],
      Sq: 2,
      Hq: 2,
      N: 64,
      D: 128,
      kvLens: [30, 64],
      kernel: "wgm",
      spike: { where: "v", at: 0.99, value: Infinity },
    },
    {
      ...fixed[2],
      Sq: 17,
      N: 300,
      D: 64,
      kvLens: [300, 299],
      tileSize: 64,
      algo: "lean",
      grid: 5,
      ws: true,
      spike: { where: "v", at: 0.995, value: NaN },
    },
    // The unmasked key loop (benchmark knob) on finite values; the masked one on a row group.
    { ...fixed[0], tm: false, causal: true },
    // The vote before the running max: off on GQA (the kernel before it), on for one row a key,
    // and on with non-finite scores.
    { ...fixed[0], lz: false },
    { ...fixed[0], Hq: 2, lz: true },
    { ...fixed[0], Hq: 2, lz: true, spike: { where: "k", at: 0.3, value: Infinity } },
    { ...fixed[0], lz: true, spike: { where: "q", at: 0.6, value: NaN } },
    {
      ...fixed[2],
      Sq: 6,
      N: 64,
      D: 128,
      kvLens: [64, 40],
      rs: 2,
      spike: { where: "v", at: 0.5, value: -Infinity },
    },
    // Run 5's sweep configurations (L = 32 applies where subgroups have ≥ 32 lanes).
    { ...fixed[0], L: 32, U: 16 },
    { ...fixed[0], L: 32, wg: 512, causal: true },
    { ...fixed[0], L: 32, wg: 128 },
    { ...fixed[0], L: 32, pf: true, U: 4 },
    { ...fixed[0], U: 4, pf: true },
    { ...fixed[0], Hq: 16, L: 32, spike: { where: "q", at: 0.5, value: NaN } },
    // ≈ 1,400 keys per worker on 1–2 workers per compute unit: 4-row units take L = 32 by
    // default where subgroups allow (H200: 132 CUs, grid 200).
    { ...fixed[0], N: 3000, kvLens: [3000, 2000] },
    { ...fixed[0], N: 40000, kvLens: [40000, 30000], grid: 200 },
    { ...fixed[0], N: 3000, kvLens: [3000, 1999], causal: true, algo: "flash-decoding" },
  );
  for (let i = 0; i < fixed.length + count; i++) {
    const r = uniformGenerator(seed0 + i);
    const c = i < fixed.length ? fixed[i] : drawCase(r, i);
    const err = await runCase(p, c, seed0 + 1000 + i).catch((e) => p.explain(e));
    if (err) {
      bad++;
      console.log(`FAIL seed ${seed0 + i}: ${JSON.stringify(c)}: ${err}`);
    }
  }
  for (let i = 0; i < Math.max(3, count / 4); i++) {
    const err = await mergeCase(p, seed0 + 5000 + i).catch((e) => p.explain(e));
    if (err) {
      bad++;
      console.log(`FAIL merge seed ${seed0 + 5000 + i}: ${err}`);
    }
  }
  console.log(`check: ${fixed.length + count} attention cases + merges, ${bad} failures`);
  return bad === 0;
}

// ---------------------------------------------------------------- benchmark

const FILL = `
enable f16;
@group(0) @binding(0) var<storage, read_write> x: array<vec2<f16>>;
@group(0) @binding(1) var<storage, read> p: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= p[0]) { return; }
  var h = i * 0x9e3779b9u + p[1];
  h ^= h >> 16u; h *= 0x7feb352du; h ^= h >> 15u; h *= 0x846ca68bu; h ^= h >> 16u;
  let a = f32(h & 0xffffu) / 32768.0 - 1.0;
  let b = f32(h >> 16u) / 32768.0 - 1.0;
  x[i] = vec2<f16>(f16(a), f16(b));
}`;

const READ = `
@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let n = arrayLength(&a);
  let stride = nw.x * 256u;
  var acc = vec4<u32>(0u);
  for (var i = g.x; i < n; i += stride) { acc ^= a[i] ^ b[i]; }
  let s = acc.x ^ acc.y ^ acc.z ^ acc.w;
  if (s == 0x12345678u) { sink[0] = s; }
}`;

function fillF16(ctx: GpuContext, elements: number, seed: number): DataId {
  const id = ctx.alloc(elements, "float16");
  const pipe = ctx.pipeline("probe-fill", () => FILL);
  const n2 = Math.ceil(elements / 2);
  const wgs = Math.ceil(n2 / 256);
  const nx = Math.min(wgs, 65535);
  ctx.dispatch(pipe, [ctx.buffer(id), ctx.scratchFrom(new Uint32Array([n2, seed]))], [
    nx,
    Math.ceil(wgs / nx),
  ]);
  return id;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Variant {
  name: string;
  algo: AttentionParams["algo"];
  tuning: AttentionTuning;
  /** Lean grid as a multiple of the compute units. */
  gridPerCu?: number;
  tileSize: number;
  numSplits?: number;
}

/**
 * Variants of `bench --quick-gqa` (run 5): the default kernel against lanes per key (`L32`: a
 * whole subgroup a key), keys per slot (`U`), prefetch (`pf`), no rotated loop (`norot`),
 * workgroup size (`wg`) and the lean grid (`gN`: N workgroups per compute unit); `flash` for
 * reference. Names are the JSON keys. (Run 4's staged-tile and row-group variants lost by
 * 10–35 points; bench/NOTES.md.)
 */
const GQA_VARIANTS: Variant[] = (
  [
    ["def", {}, 2],
    ["g1", {}, 1],
    ["g3", {}, 3],
    ["U4", { U: 4 }, 2],
    ["U4 g3", { U: 4 }, 3],
    ["pf U4", { pf: true, U: 4 }, 2],
    ["L32", { L: 32 }, 2],
    ["L32 g1", { L: 32 }, 1],
    ["L32 g3", { L: 32 }, 3],
    ["L32 U4", { L: 32, U: 4 }, 2],
    ["L32 U4 g4", { L: 32, U: 4 }, 4],
    ["L32 U16", { L: 32, U: 16 }, 2],
    ["L32 U16 g1", { L: 32, U: 16 }, 1],
    ["L32 pf U4", { L: 32, pf: true, U: 4 }, 2],
    ["L32 pf", { L: 32, pf: true }, 2],
    ["L32 norot", { L: 32, rot: false }, 2],
    ["L32 wg512 g1", { L: 32, wg: 512 }, 1],
    ["L32 wg512 U4", { L: 32, wg: 512, U: 4 }, 2],
    ["L32 wg128 g4", { L: 32, wg: 128 }, 4],
    // Run 6's default before the keys-per-worker rule (16 lanes a key for 4-row units).
    ["L16", { L: 16 }, 2],
    ["L16 g1", { L: 16 }, 1],
    // The per-row P·V tail mask forced on (run 8's default for decode too): its cost. Since
    // run 9, decode zeroes V loads past the segment instead and masks only causal prefill.
    ["tm", { tailMask: true }, 2],
    // The vote before the running max (default on for ≥ 2 rows since eda675b) forced off, and
    // forced on (MHA too: one row a key was untried).
    ["nolz", { lazyMax: false }, 2],
    ["lz", { lazyMax: true }, 2],
    // The workgroup-memory kernel (devices without subgroups; R·D ≤ 512).
    ["wgm", { kernel: "wgm" }, 2],
  ] as [string, AttentionTuning, number][]
).map(([name, tuning, g]): Variant => ({
  name,
  algo: "lean",
  tuning,
  gridPerCu: g,
  tileSize: 256,
})).concat([{ name: "flash", algo: "flash", tuning: {}, tileSize: 128 }]);

async function bench(p: Probe, args: string[]): Promise<void> {
  const ctx = p.ctx;
  const gqa = args.includes("--quick-gqa");
  const quick = args.includes("--quick");
  const ji = args.indexOf("--json");
  const jsonPath = ji >= 0 ? args[ji + 1] : null;
  const D = 128;
  const shapes: [number, number, number][] = gqa
    ? [[1, 32, 8], [4, 32, 8], [16, 32, 8], [1, 64, 8], [1, 32, 32]]
    : quick
    ? [[1, 32, 32], [4, 32, 8]]
    : [[1, 32, 32], [1, 64, 64], [4, 32, 32], [16, 32, 32], [1, 32, 8], [4, 32, 8], [16, 32, 8]];
  const ni = args.indexOf("--ns");
  // `--ns 256,512`: other sequence lengths (a smoke run on a slow adapter).
  const Ns = ni >= 0
    ? args[ni + 1].split(",").map(Number)
    : quick
    ? [4096, 16384]
    : [4096, 16384, 65536];
  const maxBind = ctx.limits.maxStorageBufferBindingSize;
  const fits = (B: number, Hkv: number, N: number) =>
    B * Hkv * N * D * 2 <= Math.min(maxBind, 1.2e9);
  const cu = computeUnits(ctx);
  const vi = args.indexOf("--variants");
  let variants: Variant[] = [
    { name: "g2", algo: "lean", tuning: {}, gridPerCu: 2, tileSize: 256 },
    { name: "rot g2", algo: "lean", tuning: { rot: true }, gridPerCu: 2, tileSize: 256 },
    { name: "pf g2", algo: "lean", tuning: { pf: true }, gridPerCu: 2, tileSize: 256 },
    { name: "g2 t64", algo: "lean", tuning: {}, gridPerCu: 2, tileSize: 64 },
    { name: "g3", algo: "lean", tuning: {}, gridPerCu: 3, tileSize: 256 },
    { name: "g4", algo: "lean", tuning: {}, gridPerCu: 4, tileSize: 256 },
    { name: "wg128 g4", algo: "lean", tuning: { wg: 128 }, gridPerCu: 4, tileSize: 256 },
    {
      name: "rot wg128 g4",
      algo: "lean",
      tuning: { wg: 128, rot: true },
      gridPerCu: 4,
      tileSize: 256,
    },
    { name: "U4 g2", algo: "lean", tuning: { U: 4 }, gridPerCu: 2, tileSize: 256 },
    { name: "v1 g2", algo: "lean", tuning: { bf: false, U: 4 }, gridPerCu: 2, tileSize: 256 },
    { name: "flash", algo: "flash", tuning: {}, tileSize: 128 },
    { name: "wgm g2", algo: "lean", tuning: { kernel: "wgm" }, gridPerCu: 2, tileSize: 256 },
    {
      name: "generic g2",
      algo: "lean",
      tuning: { kernel: "generic" },
      gridPerCu: 2,
      tileSize: 256,
    },
  ];
  if (gqa) variants = GQA_VARIANTS;
  if (vi >= 0) {
    const pick = args[vi + 1].split(",");
    variants = variants.filter((_, i) => pick.includes(String(i)));
  }
  const reps = quick ? 5 : 10;
  const t0 = performance.now();
  const rows: Record<string, unknown>[] = [];
  const read = ctx.pipeline("probe-read", () => READ);
  for (const [B, Hq, Hkv] of shapes) {
    const list = Ns.filter((N) => fits(B, Hkv, N));
    if (ni < 0 && !list.some((N) => N >= 16384) && fits(B, Hkv, 8192)) list.push(8192);
    for (const N of list) {
      const elems = B * Hkv * N * D;
      const k = fillF16(ctx, elems, 1);
      const v = fillF16(ctx, elems, 2);
      const q = fillF16(ctx, B * Hq * D, 3);
      const bytes = 2 * elems * 2;
      // Ceiling: a streaming read of the same K and V bytes.
      const sinkId = ctx.alloc(4, "float32");
      const sink = ctx.buffer(sinkId);
      const ceiling = async () => {
        let best = Infinity;
        for (const per of [8, 32]) {
          const readOnce = () =>
            ctx.dispatch(read, [ctx.buffer(k), ctx.buffer(v), sink], [cu * per], "read");
          readOnce();
          await heatGpu(ctx.device, 100, 8 * cu);
          const { ns } = await p.timed(() => {
            for (let i = 0; i < reps; i++) readOnce();
          });
          best = Math.min(best, median(ns));
        }
        return best;
      };
      const ceilNs = await ceiling();
      const row: Record<string, unknown> = {
        B,
        Hq,
        Hkv,
        N,
        MB: +(bytes / 1e6).toFixed(1),
        ceilUs: +(ceilNs / 1e3).toFixed(1),
        ceilTBs: +(bytes / ceilNs / 1e3).toFixed(2),
      };
      for (const vr of variants) {
        const kvLens = new Array(B).fill(N);
        const plan = { batch: B, kvHeads: Hkv, kvLens, tileSize: vr.tileSize };
        const schedule = vr.algo === "lean"
          ? leanSchedule({ ...plan, grid: cu * (vr.gridPerCu ?? 4) })
          : splitSchedule({ ...plan, numSplits: vr.numSplits ?? 1 });
        const params: AttentionParams = plainRun({
          algo: vr.algo,
          scale: 1 / Math.sqrt(D),
          causal: false,
          kvLens: Int32Array.from(kvLens),
          schedule,
        });
        const qi = { id: q, shape: [B, Hq, 1, D], dtype: "float16" as DType };
        const ki = { id: k, shape: [B, Hkv, N, D], dtype: "float16" as DType };
        const vinfo = { id: v, shape: [B, Hkv, N, D], dtype: "float16" as DType };
        const outs: DataId[] = [];
        const once = () => {
          const r = webgpuAttention(ctx, qi, ki, vinfo, params, vr.tuning);
          outs.push(r.out, r.lse);
        };
        p.usedKeys = [];
        once();
        // The kernel configuration that ran (the tuning resolves per device).
        row[vr.name + " cfg"] = p.usedKeys.filter((k) => k.startsWith("attn-sg")).join(" ") ||
          p.usedKeys[0];
        p.gpu.flush();
        // At the top clock (an idle H200 sits at 345 MHz; bench/_heater.ts).
        await heatGpu(ctx.device, 100, 8 * cu);
        const { ns: passes, labels, stamps } = await p.timed(() => {
          for (let i = 0; i < reps; i++) once();
        });
        // GPU time of a call: the span from its first pass's begin to its last pass's end
        // (counts the gap between the passes, cannot double-count a pass-begin stamped
        // before the pass waits for the previous one); the sum of the passes' own times and
        // the reduce pass alone are kept for comparison.
        const sum: number[] = [];
        const red: number[] = [];
        const span: number[] = [];
        let acc = 0;
        let begin = 0;
        labels.forEach((l, i) => {
          if (l !== "attention-reduce") begin = stamps[2 * i];
          acc += passes[i];
          if (l === "attention-reduce") red.push(passes[i]);
          if (l !== "attention-reduce" && labels[i + 1] === "attention-reduce") return;
          sum.push(acc);
          span.push(stamps[2 * i + 1] - begin);
          acc = 0;
        });
        for (const id of outs) p.release(id);
        const t = median(span);
        row[vr.name] = +(t / 1e3).toFixed(1);
        row[vr.name + " sum"] = +(median(sum) / 1e3).toFixed(1);
        if (red.length) row[vr.name + " red"] = +(median(red) / 1e3).toFixed(1);
        row[vr.name + " %"] = Math.round((100 * ceilNs) / t);
      }
      // Measured again after the variants: a large change means the GPU was shared meanwhile.
      row.ceilAfterUs = +((await ceiling()) / 1e3).toFixed(1);
      rows.push(row);
      // --quick-gqa keeps the output short (its rows are in the JSON and the final table).
      if (!gqa) console.log(JSON.stringify(row));
      for (const id of [k, v, q, sinkId]) p.release(id);
    }
  }
  if (args.includes("--prefill")) {
    // One causal prefill (generic kernel): Sq = N = 2048, GQA 32/8, flash schedule.
    const [B, Hq, Hkv, N] = Deno.env.get("PROBE_SMALL") ? [1, 4, 2, 128] : [1, 32, 8, 2048];
    const k = fillF16(ctx, B * Hkv * N * D, 1);
    const v = fillF16(ctx, B * Hkv * N * D, 2);
    const q = fillF16(ctx, B * Hq * N * D, 3);
    const kvLens = [N];
    const qBlocks = Math.ceil(N / 64);
    for (const algo of ["flash", "lean"] as const) {
      const plan = { batch: B, kvHeads: Hkv, kvLens, tileSize: 64, qBlocks };
      const schedule = algo === "lean"
        ? leanSchedule({ ...plan, grid: cu * 2 })
        : splitSchedule({ ...plan, numSplits: 1 });
      const params: AttentionParams = plainRun({
        algo,
        scale: 1 / Math.sqrt(D),
        causal: true,
        kvLens: Int32Array.from(kvLens),
        schedule,
      });
      const outs: DataId[] = [];
      const once = () => {
        const r = webgpuAttention(
          ctx,
          { id: q, shape: [B, Hq, N, D], dtype: "float16" },
          { id: k, shape: [B, Hkv, N, D], dtype: "float16" },
          { id: v, shape: [B, Hkv, N, D], dtype: "float16" },
          params,
          {},
        );
        outs.push(r.out, r.lse);
      };
      once();
      const timed = await p.timed(() => {
        for (let i = 0; i < 3; i++) once();
      });
      const ns = timed.ns.reduce((a, b) => a + b, 0) / 3;
      for (const id of outs) p.release(id);
      const flops = 4 * B * Hq * D * (N * (N + 1)) / 2;
      console.log(
        `prefill ${algo} causal B${B} Hq${Hq} Hkv${Hkv} Sq=N=${N}: ${(ns / 1e6).toFixed(2)} ms, ${
          (flops / ns / 1e3).toFixed(2)
        } TFLOP/s`,
      );
    }
    for (const id of [k, v, q]) p.release(id);
  }
  if (jsonPath) {
    await Deno.writeTextFile(
      jsonPath,
      JSON.stringify({ device: ctx.description, date: new Date().toISOString(), rows }, null, 1),
    );
  }
  console.log(`\nadapter: ${ctx.description}; ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
  if (gqa) {
    // One short table: µs (span) and % of the ceiling per variant.
    console.log(
      `B,Hq,Hkv | N | ceil µs before/after | ${
        variants.map((v) => `${v.name} µs (%)`).join(" | ")
      }`,
    );
    for (const r of rows) {
      console.log(
        [
          `${r.B},${r.Hq},${r.Hkv}`,
          r.N,
          `${r.ceilUs}/${r.ceilAfterUs}`,
          ...variants.map((v) => `${r[v.name]} (${r[v.name + " %"]})`),
        ].join(" | "),
      );
    }
    return;
  }
  const cols = [
    "B",
    "Hq",
    "Hkv",
    "N",
    "ceilUs",
    "ceilAfterUs",
    "ceilTBs",
    ...variants.map((v) => v.name + " %"),
  ];
  console.log("(% of the ceiling by the span of each call's passes)");
  console.log(cols.join(" | "));
  for (const r of rows) console.log(cols.map((c) => String(r[c])).join(" | "));
}

if (import.meta.main) {
  const [mode = "check", ...rest] = Deno.args;
  const gpu = await webgpu(
    rest.includes("--no-subgroups") ? { disableFeatures: ["subgroups"] } : {},
  );
  const p = new Probe(gpu);
  console.log(`adapter: ${gpu.description}; features ${JSON.stringify(gpu.features)}`);
  if (mode === "case") {
    const c = JSON.parse(rest[0]);
    console.log(await runCase(p, c, Number(rest[1] ?? 7)) ?? "ok");
  } else if (mode === "check") {
    const ni = rest.indexOf("--n");
    const ok = await check(p, ni >= 0 ? Number(rest[ni + 1]) : 40, 1);
    if (!ok) Deno.exit(1);
  } else if (mode === "bench") {
    await bench(p, rest);
  } else {
    console.error(`unknown mode ${mode}`);
    Deno.exit(2);
  }
  gpu.flush();
}
