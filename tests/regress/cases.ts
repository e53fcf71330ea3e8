/**
 * The fixed, seeded cases of the numeric regression gate (`deno task regress`), how one runs
 * on a backend, and how its error against the float64 reference is measured. Tests reuse
 * {@link runAlgo} and {@link compareIeee}.
 *
 * The error of a case is `max |x − ref| / max |ref|` over the outputs (and separately over the
 * finite LSEs), where `ref` is attention in float64 on the same stored (rounded) inputs. It is
 * NaN when the result is non-finite anywhere the reference is not (or the other way round),
 * so a NaN in the gate's table always means a wrong result, never a hostile input.
 *
 * Changing a case (shape, seed, options) changes its numbers: rename it (the key is the
 * name), so the gate reports the old one as gone and the new one as new, and run
 * `deno task regress --update`.
 *
 * @module
 */
import type { Backend } from "../../backends/backend.ts";
import { flashAttention } from "../../attention/flash.ts";
import { leanAttention } from "../../attention/lean.ts";
import type { AttentionState } from "../../attention/merge.ts";
import { naiveAttention } from "../../attention/naive.ts";
import { tensor } from "../../tensor/creation.ts";
import { type DType, roundToF16 } from "../../tensor/dtype.ts";
import { normals } from "../../tensor/random.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import { LimitError } from "../../tensor/errors.ts";
import { referenceAttention } from "../../testing/reference.ts";
import type { VariantOptions } from "../../attention/_variant.ts";

/** The algorithms the gate measures. */
export type Algo = "naive" | "flash" | "flash-decoding" | "lean";

/** Every algorithm, in report order. */
export const ALGOS: readonly Algo[] = ["naive", "flash", "flash-decoding", "lean"];

/** One attention problem of the gate. */
export interface RegressCase {
  /** Stable name; part of the baseline key. */
  name: string;
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  D: number;
  dtype: DType;
  seed: number;
  kvLens?: number[];
  causal?: boolean;
  scale?: number;
  /** Multiplier of q (wide logits). */
  qScale?: number;
  /** Keys per block/tile for flash, flash-decoding and lean. */
  tile: number;
  /** flash-decoding splits. */
  numSplits: number;
  /** lean workers. */
  grid: number;
  /** Variant: sliding window. */
  window?: { left?: number; right?: number };
  /** Variant: soft-cap. */
  softcap?: number;
  /** Variant: sink logits `[Hq]`. */
  sinks?: number[];
  /** Variant: ALiBi slopes `[Hq]`. */
  alibiSlopes?: number[];
  /**
   * Variant: an additive bias of this 4-D shape (broadcast to `[B, Hq, Sq, N]`), seeded
   * normals in the case's dtype with every `hideEvery`-th entry −∞ (when set).
   */
  bias?: { shape: number[]; hideEvery?: number };
}

/** Whether a case uses a variant (window, soft-cap, sinks, ALiBi or bias). */
export function hasVariant(c: RegressCase): boolean {
  return !!(c.window || c.softcap || c.sinks || c.alibiSlopes || c.bias);
}

/** ALiBi's usual slopes `2^(−8h/H)`, h = 1..H. */
const alibi = (H: number) => Array.from({ length: H }, (_, h) => 2 ** (-8 * (h + 1) / H));

/** The suite. Shapes stay small enough for a software GPU (whole gate well under 60 s). */
export const CASES: readonly RegressCase[] = [
  {
    name: "decode-gqa-ragged",
    B: 2,
    Hq: 8,
    Hkv: 2,
    Sq: 1,
    N: 777,
    D: 64,
    dtype: "float32",
    seed: 101,
    kvLens: [777, 300],
    tile: 64,
    numSplits: 4,
    grid: 7,
  },
  {
    name: "decode-mqa-empty-row",
    B: 3,
    Hq: 4,
    Hkv: 1,
    Sq: 1,
    N: 513,
    D: 32,
    dtype: "float32",
    seed: 202,
    kvLens: [513, 0, 65],
    tile: 32,
    numSplits: 5,
    grid: 11,
  },
  {
    name: "decode-long-context",
    B: 1,
    Hq: 4,
    Hkv: 2,
    Sq: 1,
    N: 4096,
    D: 64,
    dtype: "float32",
    seed: 303,
    tile: 128,
    numSplits: 8,
    grid: 13,
  },
  {
    name: "prefill-causal",
    B: 2,
    Hq: 4,
    Hkv: 2,
    Sq: 70,
    N: 200,
    D: 32,
    dtype: "float32",
    seed: 404,
    causal: true,
    kvLens: [200, 133],
    tile: 48,
    numSplits: 3,
    grid: 5,
  },
  {
    name: "wide-logits",
    B: 1,
    Hq: 2,
    Hkv: 1,
    Sq: 3,
    N: 300,
    D: 16,
    dtype: "float32",
    seed: 505,
    qScale: 10,
    tile: 16,
    numSplits: 6,
    grid: 9,
  },
  {
    name: "odd-sizes-d1",
    B: 3,
    Hq: 6,
    Hkv: 3,
    Sq: 2,
    N: 37,
    D: 1,
    dtype: "float32",
    seed: 606,
    kvLens: [1, 37, 20],
    tile: 5,
    numSplits: 7,
    grid: 4,
  },
  {
    name: "decode-d128-batch",
    B: 4,
    Hq: 16,
    Hkv: 4,
    Sq: 1,
    N: 1024,
    D: 128,
    dtype: "float32",
    seed: 909,
    kvLens: [1024, 1, 512, 1000],
    tile: 64,
    numSplits: 8,
    grid: 64,
  },
  {
    name: "one-head-many-workers",
    B: 1,
    Hq: 1,
    Hkv: 1,
    Sq: 1,
    N: 2000,
    D: 64,
    dtype: "float32",
    seed: 1010,
    tile: 16,
    numSplits: 16,
    grid: 97,
  },
  {
    name: "query-block-boundary",
    B: 1,
    Hq: 2,
    Hkv: 2,
    Sq: 65,
    N: 64,
    D: 64,
    dtype: "float32",
    seed: 1111,
    tile: 64,
    numSplits: 2,
    grid: 3,
  },
  {
    name: "decode-gqa-f16",
    B: 2,
    Hq: 8,
    Hkv: 2,
    Sq: 1,
    N: 777,
    D: 64,
    dtype: "float16",
    seed: 707,
    kvLens: [500, 777],
    tile: 64,
    numSplits: 4,
    grid: 7,
  },
  {
    name: "prefill-causal-f16",
    B: 1,
    Hq: 4,
    Hkv: 1,
    Sq: 65,
    N: 160,
    D: 48,
    dtype: "float16",
    seed: 808,
    causal: true,
    tile: 32,
    numSplits: 2,
    grid: 6,
  },
  // Variants (VARIANTS.md). Until the WGSL kernels implement them, flash and lean on WebGPU
  // refuse these with LimitError and their rows are absent there (runCase).
  {
    name: "variant-decode-window-sinks",
    B: 2,
    Hq: 8,
    Hkv: 2,
    Sq: 1,
    N: 777,
    D: 64,
    dtype: "float32",
    seed: 1201,
    kvLens: [777, 300],
    window: { left: 100 },
    sinks: [0.5, -1, 2, 0, 3, -2, 1, 0.25],
    tile: 32,
    numSplits: 4,
    grid: 7,
  },
  {
    name: "variant-prefill-window-alibi",
    B: 1,
    Hq: 4,
    Hkv: 2,
    Sq: 40,
    N: 200,
    D: 32,
    dtype: "float32",
    seed: 1301,
    causal: true,
    kvLens: [170],
    window: { left: 31 },
    alibiSlopes: alibi(4),
    tile: 16,
    numSplits: 3,
    grid: 5,
  },
  {
    name: "variant-decode-softcap-bias-f16",
    B: 2,
    Hq: 4,
    Hkv: 1,
    Sq: 1,
    N: 300,
    D: 64,
    dtype: "float16",
    seed: 1401,
    qScale: 4,
    kvLens: [300, 123],
    softcap: 5,
    bias: { shape: [2, 4, 1, 300], hideEvery: 7 },
    tile: 64,
    numSplits: 3,
    grid: 6,
  },
  {
    name: "variant-prefill-all",
    B: 2,
    Hq: 6,
    Hkv: 2,
    Sq: 5,
    N: 150,
    D: 16,
    dtype: "float32",
    seed: 1501,
    causal: true,
    kvLens: [150, 77],
    window: { left: 20, right: 0 },
    softcap: 30,
    sinks: [0, 1, -1, 2, -2, 0.5],
    alibiSlopes: alibi(6),
    bias: { shape: [1, 1, 5, 150] },
    tile: 8,
    numSplits: 5,
    grid: 9,
  },
];

/** The stored inputs of a case (rounded to its dtype) and the float64 reference on them. */
export interface CaseData {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  ref: { out: Float64Array; lse: Float64Array };
  /** The bias values (rounded to the case's dtype), when the case has a bias. */
  bias?: Float32Array;
}

/** Builds the inputs of `c` from its seed and computes the reference. */
export function caseData(c: RegressCase): CaseData {
  const round = (x: Float32Array) => (c.dtype === "float16" ? roundToF16(x) : x);
  const q = round(normals(c.B * c.Hq * c.Sq * c.D, c.seed).map((x) => x * (c.qScale ?? 1)));
  const k = round(normals(c.B * c.Hkv * c.N * c.D, c.seed + 1));
  const v = round(normals(c.B * c.Hkv * c.N * c.D, c.seed + 2));
  let bias: Float32Array | undefined;
  if (c.bias) {
    const { shape, hideEvery } = c.bias;
    bias = round(normals(shape.reduce((a, n) => a * n, 1), c.seed + 3));
    if (hideEvery) { for (let i = 0; i < bias.length; i += hideEvery) bias[i] = -Infinity; }
  }
  const ref = referenceAttention({
    q,
    k,
    v,
    ...c,
    bias: bias && { values: bias, shape: c.bias!.shape },
  });
  return { q, k, v, ref, bias };
}

/** Runs `algo` with the case's options on tensors q, k, v, returning `{ out, lse }`. */
export function runAlgo(
  algo: Algo,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  c: Pick<RegressCase, "kvLens" | "causal" | "scale" | "tile" | "numSplits" | "grid">,
  variant: VariantOptions = {},
): AttentionState {
  const base = {
    kvLens: c.kvLens,
    causal: c.causal,
    scale: c.scale,
    returnLse: true as const,
    ...variant,
  };
  switch (algo) {
    case "naive":
      return naiveAttention(q, k, v, base);
    case "flash":
      return flashAttention(q, k, v, { ...base, blockN: c.tile });
    case "flash-decoding":
      return flashAttention(q, k, v, { ...base, blockN: c.tile, numSplits: c.numSplits });
    case "lean":
      return leanAttention(q, k, v, { ...base, tileSize: c.tile, grid: c.grid });
  }
}

/** Errors of one run. */
export interface CaseErrors {
  /** `max |out − ref| / max |ref out|`; NaN if the non-finite pattern differs. */
  out: number;
  /** `max |lse − ref| / max(1, max |ref lse|)` over finite rows; NaN likewise. */
  lse: number;
}

/** Runs every algorithm of `c` on `backend`; inputs are uploaded once. */
export async function runCase(
  backend: Backend,
  c: RegressCase,
  data: CaseData,
  algos: readonly Algo[] = ALGOS,
): Promise<Map<Algo, CaseErrors>> {
  const q = tensor(data.q, { shape: [c.B, c.Hq, c.Sq, c.D], dtype: c.dtype, backend });
  const k = tensor(data.k, { shape: [c.B, c.Hkv, c.N, c.D], dtype: c.dtype, backend });
  const v = tensor(data.v, { shape: [c.B, c.Hkv, c.N, c.D], dtype: c.dtype, backend });
  const results = new Map<Algo, CaseErrors>();
  const bias = data.bias &&
    tensor(data.bias, { shape: c.bias!.shape, dtype: c.dtype, backend });
  const variant: VariantOptions = {
    ...(c.window ? { window: c.window } : {}),
    ...(c.softcap ? { softcap: c.softcap } : {}),
    ...(c.sinks ? { sinks: c.sinks } : {}),
    ...(c.alibiSlopes ? { alibiSlopes: c.alibiSlopes } : {}),
    ...(bias ? { bias } : {}),
  };
  try {
    // Submit everything, then read: one wait on a GPU instead of one per algorithm. A
    // variant an algorithm does not yet run on this backend (LimitError) leaves its row out.
    const states: (readonly [Algo, AttentionState])[] = [];
    for (const a of algos) {
      try {
        states.push([a, runAlgo(a, q, k, v, c, variant)]);
      } catch (e) {
        if (!(e instanceof LimitError) || !hasVariant(c)) throw e;
      }
    }
    for (const [algo, s] of states) {
      const out = await s.out.data();
      const lse = await s.lse.data();
      s.out.dispose();
      s.lse.dispose();
      results.set(algo, {
        out: relativeError(out, data.ref.out, 0),
        lse: relativeError(lse, data.ref.lse, 1),
      });
    }
  } finally {
    q.dispose();
    k.dispose();
    v.dispose();
    bias?.dispose();
  }
  return results;
}

/**
 * `max |got − want| / max(floor, max |want|)` over finite `want`; NaN when a value is
 * non-finite where `want` is finite, or differs from a non-finite `want` (NaN matches NaN).
 */
export function relativeError(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  floor: number,
): number {
  if (compareIeee(got, want, Infinity) !== null) return NaN;
  let scale = floor;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(want[i])) continue;
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return scale === 0 ? err : err / scale;
}

/**
 * The first index where `got` and `want` differ as IEEE values — NaN must meet NaN, ±∞ the
 * same infinity, a finite value a finite value within `tol` — described for a message, or
 * null when they agree.
 */
export function compareIeee(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
): string | null {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    const ok = Number.isNaN(w)
      ? Number.isNaN(g)
      : !Number.isFinite(w)
      ? g === w
      : Number.isFinite(g) && Math.abs(g - w) <= tol;
    if (!ok) return `element ${i}: got ${g}, want ${w}${Number.isFinite(w) ? ` ± ${tol}` : ""}`;
  }
  return null;
}
