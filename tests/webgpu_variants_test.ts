/**
 * The WebGPU attention kernels with attention variants (VARIANTS.md): sliding windows
 * (left, right, with causal prefill), soft-cap, sinks, ALiBi and additive bias, driven
 * directly with hand-built runs — lean, flash and flash-decoding schedules, units that start
 * past key 0 (a window-aware schedule's `keyStart`), a K/V part run (key offset, positions
 * past its own lengths), GQA, ragged lengths, float32 and float16 — through each kernel
 * (subgroup, workgroup-memory, generic), against a float64 reference of the run written here
 * from the math. NaN in keys no row can see changes nothing. With K/V stored in parts, the
 * sinks are merged once across the parts' states.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { webgpuAttention } from "../backends/webgpu/internal.ts";
import type { AttentionInputs, TensorBackend, TensorInfo } from "../backends/backend.ts";
import {
  type AttentionPlan,
  type AttentionRun,
  type AttentionVariant,
  PLAIN_ATTENTION,
  plainRun,
} from "../schedule/attention_plan.ts";
import { type LeanSchedule, leanSchedule, splitSchedule } from "../schedule/lean_schedule.ts";
import { epsilon } from "../tensor/dtype.ts";
import { normals } from "../tensor/random.ts";
import type { RefInput } from "../testing/reference.ts";
import { ownWebgpu, webgpuBackend } from "./_backends.ts";
import { recordPipelines } from "./_pipeline_keys.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** One run's problem: local K/V of N keys, positions from positionLens and keyOffset. */
interface Case extends Pick<RefInput, "B" | "Hq" | "Hkv" | "Sq" | "N" | "D"> {
  name: string;
  kvLens: number[];
  positionLens?: number[];
  keyOffset?: number;
  causal: boolean;
  variant: Partial<AttentionVariant>;
  /** Bias shape (last dim: keyOffset + N or 1). */
  biasShape?: number[];
  f16?: boolean;
  /** Schedule: lean grid, or flash-decoding splits; `trim` starts units at their first visible key. */
  grid?: number;
  splits?: number;
  qBlocks?: number;
  trim?: boolean;
  /** NaN into K and V at keys no row sees. */
  nanHidden?: boolean;
}

interface Data {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  sinks: Float64Array;
  slopes: Float64Array;
  bias: Float64Array | null;
}

const round = (x: Float64Array, f16: boolean) =>
  f16 ? x.map((a) => Math.f16round(a)) : x.map((a) => Math.fround(a));

/** The visible local key range `[lo, hi)` of row i of batch b. */
function visibleRange(c: Case, v: AttentionVariant, b: number, i: number): [number, number] {
  const off = c.keyOffset ?? 0;
  const p = (c.positionLens ?? c.kvLens)[b] - c.Sq + i;
  let hi = c.kvLens[b];
  if (c.causal) hi = Math.min(hi, p + 1 - off);
  if (v.windowRight !== Infinity) hi = Math.min(hi, p + v.windowRight + 1 - off);
  const lo = v.windowLeft === Infinity ? 0 : Math.max(0, p - v.windowLeft - off);
  return [lo, Math.max(lo, hi)];
}

/** Float64 attention of one run, from VARIANTS.md directly. */
function reference(c: Case, v: AttentionVariant, x: Data) {
  const { B, Hq, Hkv, Sq, N, D } = c;
  const off = c.keyOffset ?? 0;
  const scale = 1 / Math.sqrt(D);
  const out = new Float64Array(B * Hq * Sq * D);
  const lse = new Float64Array(B * Hq * Sq);
  const bs = c.biasShape;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < Sq; i++) {
        const row = (b * Hq + h) * Sq + i;
        const p = (c.positionLens ?? c.kvLens)[b] - Sq + i;
        const [lo, hi] = visibleRange(c, v, b, i);
        const s: number[] = [];
        for (let j = lo; j < hi; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) {
            dot += x.q[row * D + d] * x.k[((b * Hkv + hk) * N + j) * D + d];
          }
          let sc = scale * dot;
          if (v.softcap > 0) sc = v.softcap * Math.tanh(sc / v.softcap);
          if (v.alibi) sc -= x.slopes[h] * Math.abs(p - (off + j));
          if (bs) {
            const ix = [b, h, i, off + j].map((n, d) => (bs[d] === 1 ? 0 : n));
            sc += x.bias![((ix[0] * bs[1] + ix[1]) * bs[2] + ix[2]) * bs[3] + ix[3]];
          }
          s.push(sc);
        }
        let m = Math.max(-Infinity, ...s);
        if (v.sinks) m = Math.max(m, x.sinks[h]);
        if (m === -Infinity) {
          lse[row] = -Infinity;
          continue;
        }
        let l = v.sinks ? Math.exp(x.sinks[h] - m) : 0;
        for (const sc of s) l += Math.exp(sc - m);
        for (let j = lo; j < hi; j++) {
          const w = Math.exp(s[j - lo] - m) / l;
          for (let d = 0; d < D; d++) out[row * D + d] += w * x.v[((b * Hkv + hk) * N + j) * D + d];
        }
        lse[row] = m + Math.log(l);
      }
    }
  }
  return { out, lse };
}

/** A schedule whose units cover only `[lo, hi)` of the union of their rows' ranges. */
function schedule(c: Case, v: AttentionVariant): LeanSchedule {
  const qBlocks = c.qBlocks ?? 1;
  const rpb = Math.ceil(c.Sq / qBlocks);
  const ranges: [number, number][] = [];
  for (let b = 0; b < c.B; b++) {
    for (let h = 0; h < c.Hkv; h++) {
      for (let qb = 0; qb < qBlocks; qb++) {
        let lo = Infinity;
        let hi = 0;
        for (let i = qb * rpb; i < Math.min(c.Sq, (qb + 1) * rpb); i++) {
          const [a, z] = visibleRange(c, v, b, i);
          if (z > a) [lo, hi] = [Math.min(lo, a), Math.max(hi, z)];
        }
        ranges.push(c.trim ? (hi > 0 ? [lo, hi] : [0, 0]) : [0, c.kvLens[b]]);
      }
    }
  }
  // Units of one batch entry may differ in range, so build over per-unit "batches" and
  // relabel: a schedule over B·Hkv·qBlocks entries of one head and one block each.
  const base = { batch: ranges.length, kvHeads: 1, tileSize: 16 };
  const kvLens = ranges.map(([lo, hi]) => hi - lo);
  const s = c.splits
    ? splitSchedule({ ...base, kvLens, numSplits: c.splits })
    : leanSchedule({ ...base, kvLens, grid: c.grid ?? 3 });
  const units = s.units.map((u, n) => ({
    ...u,
    b: Math.floor(n / (c.Hkv * qBlocks)),
    kvHead: Math.floor(n / qBlocks) % c.Hkv,
    qBlock: n % qBlocks,
    keyStart: ranges[n][0],
  }));
  return {
    ...s,
    units,
    plan: { ...s.plan, batch: c.B, kvHeads: c.Hkv, qBlocks, kvLens: c.kvLens },
  };
}

function makeData(c: Case, seed: number): Data {
  const f16 = c.f16 ?? false;
  const g = (n: number, s: number, mul = 1) =>
    round(Float64Array.from(normals(n, s), (a) => a * mul), f16);
  const bias = c.biasShape
    ? round(Float64Array.from(normals(c.biasShape.reduce((a, b) => a * b), seed + 5)), f16)
    : null;
  return {
    q: g(c.B * c.Hq * c.Sq * c.D, seed, 2),
    k: g(c.B * c.Hkv * c.N * c.D, seed + 1),
    v: g(c.B * c.Hkv * c.N * c.D, seed + 2),
    sinks: round(Float64Array.from(normals(c.Hq, seed + 3), (a) => 2 * a), false),
    slopes: round(Float64Array.from({ length: c.Hq }, (_, h) => 2 ** (-(h + 1) / 2)), false),
    bias,
  };
}

const CASES: Case[] = [
  {
    name: "decode GQA, left window, soft-cap, sinks, ALiBi, lean over trimmed units",
    B: 2,
    Hq: 8,
    Hkv: 2,
    Sq: 1,
    N: 300,
    D: 64,
    kvLens: [300, 170],
    causal: true,
    variant: { windowLeft: 50, softcap: 3, sinks: true, alibi: true },
    grid: 5,
    trim: true,
    nanHidden: true,
  },
  {
    name: "causal prefill, left window, full bias, flash (query blocks), untrimmed",
    B: 1,
    Hq: 4,
    Hkv: 2,
    Sq: 5,
    N: 120,
    D: 32,
    kvLens: [117],
    causal: true,
    variant: { windowLeft: 20 },
    biasShape: [1, 4, 5, 120],
    splits: 1,
    qBlocks: 2,
  },
  {
    name: "part run (key offset 64, positions past its lengths), f16, bias, ALiBi, flash-decoding",
    B: 1,
    Hq: 4,
    Hkv: 1,
    Sq: 3,
    N: 128,
    D: 64,
    kvLens: [100],
    positionLens: [200],
    keyOffset: 64,
    causal: true,
    variant: { windowLeft: 100, alibi: true, softcap: 4 },
    biasShape: [1, 1, 1, 192],
    f16: true,
    splits: 3,
    trim: true,
  },
  {
    name: "two-sided window, not causal, sinks with an empty entry, lean",
    B: 2,
    Hq: 2,
    Hkv: 2,
    Sq: 4,
    N: 80,
    D: 32,
    kvLens: [80, 0],
    causal: false,
    variant: { windowLeft: 10, windowRight: 3, sinks: true },
    grid: 4,
    trim: true,
    nanHidden: true,
  },
  {
    name: "plain math with moved positions (causal part run 'before' its end), sinks, f16",
    B: 2,
    Hq: 4,
    Hkv: 2,
    Sq: 2,
    N: 64,
    D: 32,
    kvLens: [64, 30],
    positionLens: [300, 94],
    keyOffset: 0,
    causal: true,
    variant: { sinks: true },
    f16: true,
    grid: 2,
  },
];

/** Uploads x as dtype with shape. */
function up(
  b: TensorBackend,
  x: Float64Array,
  shape: number[],
  dtype: "float32" | "float16" = "float32",
): TensorInfo {
  return { id: b.upload(Float32Array.from(x), dtype, shape), shape, dtype };
}

function check(name: string, got: Float32Array, want: Float64Array, tol: number) {
  for (let i = 0; i < want.length; i++) {
    const [a, e] = [got[i], want[i]];
    if (e === -Infinity || Number.isNaN(e)) {
      assert(
        Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)),
        `${name}: [${i}] ${a}, want ${e}`,
      );
    } else {assert(
        Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)),
        `${name}: [${i}] ${a}, want ${e} ± ${tol}`,
      );}
  }
}

Deno.test({
  name: "variant kernels (sg, wgm, generic) match the float64 reference of VARIANTS.md",
  ...opts,
  fn: async () => {
    const b = await webgpuBackend();
    if (!b) return;
    const { ctx, keys } = recordPipelines(b.ctx);
    const ran = new Set<string>();
    for (const [ci, c] of CASES.entries()) {
      const variant: AttentionVariant = {
        ...PLAIN_ATTENTION,
        ...c.variant,
        bias: c.biasShape ? { shape: c.biasShape, dtype: c.f16 ? "float16" : "float32" } : null,
      };
      const x = makeData(c, 40 + 10 * ci);
      if (c.nanHidden) {
        // NaN in K and V at every key no row of its batch entry sees.
        for (let bb = 0; bb < c.B; bb++) {
          const seen = new Set<number>();
          for (let i = 0; i < c.Sq; i++) {
            const [lo, hi] = visibleRange(c, variant, bb, i);
            for (let j = lo; j < hi; j++) seen.add(j);
          }
          for (let h = 0; h < c.Hkv; h++) {
            for (let j = 0; j < c.N; j++) {
              if (seen.has(j)) continue;
              const o = ((bb * c.Hkv + h) * c.N + j) * c.D;
              x.k.fill(NaN, o, o + c.D);
              x.v.fill(NaN, o, o + c.D);
            }
          }
        }
      }
      const want = reference(c, variant, x);
      const dt = c.f16 ? "float16" as const : "float32" as const;
      const q = up(b, x.q, [c.B, c.Hq, c.Sq, c.D], dt);
      const k = up(b, x.k, [c.B, c.Hkv, c.N, c.D], dt);
      const v = up(b, x.v, [c.B, c.Hkv, c.N, c.D], dt);
      const inputs: AttentionInputs = {
        sinks: variant.sinks ? up(b, x.sinks, [c.Hq]) : undefined,
        alibiSlopes: variant.alibi ? up(b, x.slopes, [c.Hq]) : undefined,
        bias: x.bias ? up(b, x.bias, c.biasShape!, dt) : undefined,
      };
      const run: AttentionRun = {
        ...plainRun({
          algo: c.splits ? (c.splits > 1 ? "flash-decoding" : "flash") : "lean",
          scale: 1 / Math.sqrt(c.D),
          causal: c.causal,
          kvLens: Int32Array.from(c.kvLens),
          schedule: schedule(c, variant),
        }),
        variant,
        keyOffset: c.keyOffset ?? 0,
        positionLens: Int32Array.from(c.positionLens ?? c.kvLens),
      };
      const rows = c.B * c.Hq * c.Sq;
      // f16 storage: inputs were rounded to f16 for the reference; the output rounds once.
      const tol = (c.f16 ? 2 * epsilon("float16") : 0) + 64 * epsilon("float32");
      for (const kernel of ["sg", "wgm", "generic"] as const) {
        for (const fusedMerge of kernel === "sg" ? [true, false] : [true]) {
          keys.length = 0;
          const r = webgpuAttention(ctx, q, k, v, run, { kernel, fusedMerge }, inputs);
          const out = await b.read(r.out, dt, rows * c.D);
          const lse = await b.read(r.lse, "float32", rows);
          b.release(r.out);
          b.release(r.lse);
          const tag = `${c.name} [${keys[0] ?? "no main"}]`;
          assert(
            keys.every((kk) =>
              kk.includes(":var[") || kk.includes(":sinks") || kk.startsWith("attn-reduce")
            ),
            tag,
          );
          if (keys[0]) ran.add(keys[0].split(":")[0]);
          check(`${tag} out`, out, want.out, tol);
          check(`${tag} lse`, lse, want.lse, tol);
          assert(!c.nanHidden || out.every((a) => Number.isFinite(a)), `${tag}: hidden NaN leaked`);
        }
      }
      for (const t of [q, k, v, inputs.sinks, inputs.alibiSlopes, inputs.bias]) {
        if (t) b.release(t.id);
      }
    }
    assert(ran.has("attn-generic") && ran.has("attn-wgm"), [...ran].join());
    if (b.features.subgroups) assert(ran.has("attn-sg"), [...ran].join());
  },
});

Deno.test({
  name:
    "K/V in parts with sinks: parts run without the sink, merged once after (one call's result)",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const gpu = await ownWebgpu({ partBytes: 8192 });
    try {
      const c: Case = {
        name: "parts",
        B: 2,
        Hq: 4,
        Hkv: 2,
        Sq: 1,
        N: 96,
        D: 32,
        kvLens: [96, 40],
        causal: false,
        variant: { sinks: true, windowLeft: 70, alibi: true },
      };
      const variant: AttentionVariant = { ...PLAIN_ATTENTION, ...c.variant };
      const x = makeData(c, 7);
      const want = reference(c, variant, x);
      const { tensor } = await import("../tensor/creation.ts");
      const t = (d: Float64Array, shape: number[]) =>
        tensor(Float32Array.from(d), { shape, backend: gpu });
      const [q, k, v] = [t(x.q, [2, 4, 1, 32]), t(x.k, [2, 2, 96, 32]), t(x.v, [2, 2, 96, 32])];
      const sinks = t(x.sinks, [4]);
      const slopes = t(x.slopes, [4]);
      const info = (z: typeof q): TensorInfo => ({ id: z.id, shape: z.shape, dtype: z.dtype });
      const parts = gpu.storageParts(info(k))!;
      assert(parts && parts.length >= 3, `K in ${parts?.length} parts`);
      const runs = parts.map((p, part): AttentionRun => {
        const lens = c.kvLens.map((n) => Math.max(0, Math.min(n - p.n0, p.n1 - p.n0)));
        const cc: Case = {
          ...c,
          N: p.n1 - p.n0,
          kvLens: lens,
          positionLens: c.kvLens,
          keyOffset: p.n0,
          trim: true,
        };
        return {
          ...plainRun({
            algo: "flash-decoding",
            scale: 1 / Math.sqrt(c.D),
            causal: false,
            kvLens: Int32Array.from(lens),
            schedule: schedule({ ...cc, splits: 2 }, variant),
          }),
          variant,
          keyOffset: p.n0,
          positionLens: Int32Array.from(c.kvLens),
          part,
        };
      });
      const plan: AttentionPlan = {
        algo: "flash-decoding",
        qShape: q.shape,
        kvShape: k.shape,
        qDtype: "float32",
        kvDtype: "float32",
        runDtype: "float32",
        scale: 1 / Math.sqrt(c.D),
        causal: false,
        kvLens: Int32Array.from(c.kvLens),
        schedule: runs[0].schedule,
        parts: parts.map(({ n0, n1 }) => ({ n0, n1 })),
        runs,
      };
      for (const r of runs) r.prepared = gpu.prepareAttention(plan, r);
      const before = gpu.memory().liveCount;
      const r = gpu.attention(info(q), info(k), info(v), plan, {
        sinks: info(sinks),
        alibiSlopes: info(slopes),
      });
      assertEquals(gpu.memory().liveCount, before + 2, "only out and lse remain");
      const out = await gpu.read(r.out, "float32", 8 * 32);
      const lse = await gpu.read(r.lse, "float32", 8);
      check("parts out", out, want.out, 64 * epsilon("float32"));
      check("parts lse", lse, want.lse, 64 * epsilon("float32"));
      gpu.release(r.out);
      gpu.release(r.lse);
    } finally {
      gpu.destroy();
    }
  },
});
