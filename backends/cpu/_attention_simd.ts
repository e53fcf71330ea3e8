/**
 * The inner loops of the CPU attention executor as a WebAssembly SIMD module whose bytes are
 * emitted here (no toolchain): float16 → float32 tile conversion, the tile's scores for all
 * rows of a unit, exp, and the P·V accumulation with the online-softmax rescale.
 *
 * Arithmetic is float32 (f32x4 lanes), the GPU backend's contract ("f16 is storage, f32 is
 * arithmetic"): q (scaled), the K/V tiles (float16 decoded exactly, float32 copied), scores,
 * p = exp(s − m), a tile's row sums and its P·V sums are float32, so one instruction does four
 * multiply-adds and nothing is widened in the inner loops. Only the running `o` is float64:
 * each tile's float32 P·V (at most T terms a lane) is folded in with `o · α + tile` once per
 * tile, so the error does not grow with the key count (one float32 chain over 32k keys was
 * 7× the GPU backend's error in `deno task regress`). The speed comes from that, from reading
 * each K/V tile once per unit rather than once per query row (scores take rows by fours and
 * P·V by pairs, so each K/V vector feeds several rows), from converting float16 by bit
 * operations instead of `Float16Array` element reads, from an f32x4 exp, and from eight
 * independent accumulator chains. Multiply-adds are `f32x4.relaxed_madd` where the engine has relaxed SIMD (fused on
 * CPUs with FMA, else a multiply then an add); every thread of a process compiles the same
 * module on the same CPU, and V8's baseline and optimising tiers agree (checked), so the
 * in-thread and Worker executors give the same bits. Summation order depends only on the
 * geometry (rows are grouped only when they see the same keys; lane sums are
 * `(l0 + l1) + (l2 + l3)`), never on the thread split.
 *
 * Layout (all offsets in bytes, row strides `Dp` elements, `Dp` a multiple of 16; all float32
 * unless said otherwise):
 * - `cvt16(src, dst, n)`: `n` (a multiple of 8) float16 values at `src` → float32 at `dst`.
 * - `scores(q, k, s, R, n, Dp, T)`: `s[r·T + j] = Σ_d q[r·Dp + d] · k[j·Dp + d]` for rows
 *   `r < R` and keys `j < n`.
 * - `pv(p, v, o, alpha, cnt, R, Dp, T)`: `o[r] = o[r] · alpha[r] + 2^sh · Σ_{j < cnt[r]}
 *   p[r·T + j] · v[j]` (`cnt` int32; `o` and `alpha` float64: the tile's sum is float32 from
 *   zero, the rescale and the fold into the running `o` float64; `sh = probShift(T)`).
 * - `pexp(s, R, T, cnt, mx, sum)`: `s[r·T + j] = exp(s[r·T + j] − mx[r]) · 2^-sh` for
 *   `j < cnt[r]` (scaled so that no float32 P·V sum of a tile over finite values overflows,
 *   see `probShift`), `sum[r] = Σ_j exp(s[r·T + j] − mx[r])` (unscaled); may read (and rewrites unchanged) up to 12
 *   bytes past a row's count, so 16 bytes after `s` must be addressable.
 * - `smax(s, R, T, cnt, mx)`: `mx[r] = max_{j < cnt[r]} s[r·T + j]`, NaN if any is NaN (reads
 *   up to 12 bytes past a row's count, as `pexp` does).
 * - `dq8(src, scales, dst, n, D, Dp)`: `dst[i·Dp + d] = scales[i] · src[i·D + d]` for `i < n`,
 *   `d < D` (`src` int8, `D` a multiple of 16): int8 K/V rows staged as `la.dequantize` gives
 *   them (`_kv_quant.ts`); `dqe4m3` the same for float8e4m3 codes (their decoded values).
 *
 * @module
 */

import {
  type Code,
  F32X4_ADD,
  F32X4_MUL,
  get,
  type Madd,
  name,
  RELAXED_MADD,
  section,
  uleb,
  wasmModule,
} from "./_wasm_encoding.ts";
import { cvt16 } from "./_wasm_cvt16.ts";
import { scores } from "./_wasm_scores.ts";
import { pv } from "./_wasm_pv.ts";
import { pexp } from "./_wasm_pexp.ts";
import { dq8 } from "./_wasm_dq8.ts";
import { smax } from "./_wasm_smax.ts";

export { PEXP_LOW, probShift } from "./_wasm_pexp.ts";

/** The kernels of one instance and its memory. */
export interface SimdKernels {
  memory: WebAssembly.Memory;
  /** A new instance of the same module (its own memory, freed with it). */
  fresh(): SimdKernels;
  cvt16(src: number, dst: number, n: number): void;
  scores(q: number, k: number, s: number, R: number, n: number, Dp: number, T: number): void;
  pv(
    p: number,
    v: number,
    o: number,
    alpha: number,
    cnt: number,
    R: number,
    Dp: number,
    T: number,
  ): void;
  pexp(s: number, R: number, T: number, cnt: number, mx: number, sum: number): void;
  /** Each row's largest score of the tile (NaN if any is NaN), float32 at `mx`. */
  smax(s: number, R: number, T: number, cnt: number, mx: number): void;
  /** `n` rows of `D` int8 values (packed, D a multiple of 16) times their scales → float32. */
  dq8(src: number, scales: number, dst: number, n: number, D: number, Dp: number): void;
  /** The same for float8e4m3 codes. */
  dqe4m3(src: number, scales: number, dst: number, n: number, D: number, Dp: number): void;
}

/**
 * The module's bytes. `fma`: multiply-adds as `f32x4.relaxed_madd` (one rounding; fused where
 * the CPU has FMA), else `f32x4.mul` then `f32x4.add`.
 */
export function simdModuleBytes(fma: boolean): Uint8Array<ArrayBuffer> {
  return kernelModuleBytes(simdFunctions(fma));
}

/** The module's functions by export name, their multiply-adds fused or not (`fma`). */
export function simdFunctions(fma: boolean): [string, Code][] {
  const madd = simdMadd(fma);
  return [
    ["cvt16", cvt16()],
    ["scores", scores(madd)],
    ["pv", pv(madd)],
    ["pexp", pexp(madd)],
    ["dq8", dq8("int8")],
    ["dqe4m3", dq8("e4m3")],
    ["smax", smax()],
  ];
}

/** `f32x4.relaxed_madd` (`fma`), else `f32x4.mul` then `f32x4.add`. */
export function simdMadd(fma: boolean): Madd {
  return fma
    ? (acc) => [...get(acc), ...RELAXED_MADD]
    : (acc) => [...F32X4_MUL, ...get(acc), ...F32X4_ADD];
}

/**
 * A module of `fns` (each taking 8 i32 params, unused ones ignored: one type for all) with
 * its own memory, exported as `mem`.
 */
export function kernelModuleBytes(fns: [string, Code][]): Uint8Array<ArrayBuffer> {
  const type = [1, 0x60, 8, ...Array(8).fill(0x7f), 0];
  const funcs = [fns.length, ...fns.map(() => 0)];
  const memory = [1, 0x00, 1];
  const exports = [
    ...uleb(fns.length + 1),
    ...name("mem"),
    0x02,
    0,
    ...fns.flatMap(([n], i) => [...name(n), 0x00, i]),
  ];
  const code = [...uleb(fns.length), ...fns.flatMap(([, c]) => c)];
  return wasmModule(
    section(1, type),
    section(3, funcs),
    section(5, memory),
    section(7, exports),
    section(10, code),
  );
}

let cached: SimdKernels | null | undefined;
let disabled = false;

/**
 * A fresh instance of one variant (tests run both): `fma` uses `f64x2.relaxed_madd`. Throws
 * where the engine lacks WebAssembly SIMD (or relaxed SIMD, for `fma`).
 */
export function instantiateSimdKernels(fma: boolean): SimdKernels {
  return instanceOf(new WebAssembly.Module(simdModuleBytes(fma)));
}

function instanceOf(module: WebAssembly.Module): SimdKernels {
  const inst = new WebAssembly.Instance(module);
  const e = inst.exports as unknown as Omit<SimdKernels, "memory" | "fresh"> & {
    mem: WebAssembly.Memory;
  };
  return {
    memory: e.mem,
    fresh: () => instanceOf(module),
    cvt16: e.cvt16,
    scores: e.scores,
    pv: e.pv,
    pexp: e.pexp,
    dq8: e.dq8,
    dqe4m3: e.dqe4m3,
    smax: e.smax,
  };
}

/**
 * Bytes of scratch a thread keeps between calls: a call needing at most this much uses the
 * thread's instance, whose memory (WebAssembly memory never shrinks) stays at most this
 * large; a call needing more gets an instance of its own, freed with the call.
 */
export const SCRATCH_POOL_BYTES = 64 * 2 ** 20;

/** WebAssembly memory of this thread's kept instance (0 before the first SIMD call). */
export function simdScratchBytes(): number {
  return cached ? cached.memory.buffer.byteLength : 0;
}

/**
 * This thread's instance (relaxed-SIMD multiply-adds where the engine has them, plain SIMD
 * otherwise), or null where WebAssembly SIMD is unavailable. Every thread of one process
 * makes the same choice, so the in-thread and Worker executors agree bit for bit.
 */
export function simdKernels(): SimdKernels | null {
  if (disabled) return null;
  if (cached !== undefined) return cached;
  for (const fma of [true, false]) {
    try {
      return cached = instantiateSimdKernels(fma);
    } catch {
      // try the next variant
    }
  }
  return cached = null;
}

/**
 * Tests only: `true` makes this thread's executor take the plain-JS path (as where
 * WebAssembly is missing). Workers are not affected.
 */
export function disableSimdKernelsForTesting(off: boolean): void {
  disabled = off;
}
