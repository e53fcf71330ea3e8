/**
 * Validation shared by every attention op: shapes of q, k, v, backends, dtypes and the common
 * options. Returns the resolved problem so ops never re-derive it.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { readOptions } from "../tensor/options.ts";
import { live, liveStorage } from "../ops/_util.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DTypeError,
  ShapeError,
  show,
} from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import { type Backend, computeBackend, type PagedKVInfo } from "../backends/backend.ts";
import type { PagedLayout } from "../schedule/attention_plan.ts";
import { MAX_TILE, MAX_WORKERS } from "../schedule/limits.ts";
import {
  type AttentionWindow,
  type ResolvedVariant,
  resolveVariant,
  VARIANT_OPTIONS,
  type VariantOptions,
} from "./_variant.ts";
import { isPagedSource, PAGED_VIEW, type PagedSource, pagesInfo } from "./_paged_view.ts";
import type { QuantizedTensor } from "../ops/quantize.ts";
import { type DType, isQuantDType } from "../tensor/dtype.ts";
import { quantizedKV } from "./_quant_kv.ts";

export { MAX_TILE, MAX_WORKERS };
export type { AttentionWindow, ResolvedVariant, VariantOptions };

/** Options every attention op takes (the variants: {@link VariantOptions}). */
export interface AttentionOptions extends VariantOptions {
  /** Multiplier of q·k (default `1/√D`). */
  scale?: number;
  /** Bottom-right aligned causal mask: query i sees keys `< len − Sq + i + 1`. */
  causal?: boolean;
  /** Valid keys per batch entry; keys at positions ≥ `kvLens[b]` are ignored. */
  kvLens?: readonly number[];
  /** Also return the natural-log LSE `[B, Hq, Sq]`. */
  returnLse?: boolean;
}

/** The option names every attention op takes. */
export const ATTENTION_OPTIONS = [
  "scale",
  "causal",
  "kvLens",
  "returnLse",
  ...VARIANT_OPTIONS,
] as const;

/** The resolved problem. */
export interface AttentionProblem {
  /** The compute backend of q, k and v. */
  backend: Backend;
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  D: number;
  scale: number;
  causal: boolean;
  kvLens: Int32Array;
  returnLse: boolean;
  /** The variant (window, soft-cap, sinks, ALiBi, bias) and its tensors. */
  variant: ResolvedVariant;
  /** The k the kernels get: the call's k, or the first K page buffer of paged K/V. */
  k: Tensor;
  /** The v the kernels get, as `k`. */
  v: Tensor;
  /** Paged K/V: the pages' layout (N is then `maxBlocks · pageSize`). */
  paged?: PagedLayout;
  /** Paged K/V: the page buffers and block table the backend reads. */
  pages?: PagedKVInfo;
  /** Quantized K/V: where the scales vary (`AttentionPlan.kvScales`). */
  kvScales?: "token" | "head";
  /** Quantized whole K/V: the scales of k (`AttentionInputs.kScale`). */
  kScale?: Tensor;
  /** Quantized whole K/V: the scales of v. */
  vScale?: Tensor;
}

/**
 * Throws {@link ArgumentError} unless `v` is a positive integer no larger than `max` (or
 * undefined when allowed).
 */
export function positiveIntOption(
  op: string,
  name: string,
  v: unknown,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1 || v > max) {
    const bound = max < Number.MAX_SAFE_INTEGER ? ` ≤ ${max}` : "";
    throw new ArgumentError(`${op}: ${name} must be a positive integer${bound}, got ${show(v)}`);
  }
  return v;
}

/**
 * Validates q `[B,Hq,Sq,D]`, k/v `[B,Hkv,N,D]` and the options; throws named errors. With a
 * paged source in place of k (the `(q, kv, opts)` form) the options come third, the lengths
 * from the source, and the problem carries the pages (see {@link AttentionProblem.paged}).
 */
export function validateAttention<O extends AttentionOptions = AttentionOptions>(
  op: string,
  q: Tensor,
  kIn: Tensor | QuantizedTensor | PagedSource,
  vIn: Tensor | QuantizedTensor | O | undefined,
  options: unknown,
  extra: readonly (keyof O & string)[] = [],
): AttentionProblem & { opts: Partial<O> } {
  if (isPagedSource(kIn)) return validatePaged<O>(op, q, kIn, vIn, options, extra);
  const opts = readOptions<O>(op, options, [...ATTENTION_OPTIONS, ...extra]);
  // Quantized K/V: the checks below see their data; the scales travel beside them.
  const quant = quantizedKV(op, kIn, vIn);
  const k = quant ? quant.k : kIn as Tensor;
  const v = quant ? quant.v : vIn;
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    // A Tensor (not a Proxy of one), not disposed; quantized data is stored, not computed on.
    if (quant && name !== "q") liveStorage(op, name, t);
    else live(op, name, t);
    if ((t as Tensor).shape.length !== 4) {
      throw new ShapeError(
        `${op}: ${name} must have rank 4 (${
          name === "q" ? "[B, Hq, Sq, D]" : "[B, Hkv, N, D]"
        }), got ${fmt((t as Tensor).shape)}`,
      );
    }
  }
  const vt = v as Tensor;
  if (
    k.backend !== q.backend || vt.backend !== q.backend ||
    (quant && quant.kScale.backend !== q.backend)
  ) {
    throw new BackendMismatchError(
      `${op}: q, k, v must be on one backend, got ${q.backend.name}, ${k.backend.name}, ${vt.backend.name}`,
    );
  }
  if (k.dtype !== vt.dtype) {
    throw new DTypeError(`${op}: k and v must have one dtype, got ${k.dtype} and ${vt.dtype}`);
  }
  const shapes = `q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(vt.shape)}`;
  if (k.shape.some((d, i) => d !== vt.shape[i])) {
    throw new ShapeError(`${op}: k and v must have the same shape, got ${shapes}`);
  }
  const [Bk, Hkv, N, Dk] = k.shape;
  checkKV(op, q, { Bk, Hkv, Dk, dtype: k.dtype, shapes });
  const B = q.shape[0];
  const kvLens = new Int32Array(B).fill(N);
  if (opts.kvLens !== undefined) {
    const l = opts.kvLens;
    if (!Array.isArray(l) || l.length !== B) {
      throw new ArgumentError(
        `${op}: kvLens must be an array of ${B} lengths (one per batch entry), got ${
          Array.isArray(l) ? `${l.length} lengths` : show(l)
        }`,
      );
    }
    for (let b = 0; b < B; b++) {
      const n = l[b];
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0 || n > N) {
        throw new ArgumentError(
          `${op}: kvLens[${b}] must be an integer in [0, ${N}], got ${show(n)}`,
        );
      }
      kvLens[b] = n;
    }
  }
  const scales = quant && { kvScales: quant.kvScales, kScale: quant.kScale, vScale: quant.vScale };
  return { ...resolve(op, q, Hkv, N, kvLens, opts), k, v: vt, ...scales, opts };
}

/** The `(q, kv, opts)` form: k, v are the first page buffers, the rest is in `paged`/`pages`. */
function validatePaged<O extends AttentionOptions>(
  op: string,
  q: Tensor,
  kv: PagedSource,
  options: unknown,
  fourth: unknown,
  extra: readonly (keyof O & string)[],
): AttentionProblem & { opts: Partial<O> } {
  if (fourth !== undefined) {
    throw new ArgumentError(
      `${op}: with a KVCache or PagedKV the call is (q, kv, opts), got a fourth argument ${
        show(fourth)
      }`,
    );
  }
  const opts = readOptions<O>(op, options, [...ATTENTION_OPTIONS, ...extra]);
  if (opts.kvLens !== undefined) {
    throw new ArgumentError(
      `${op}: kvLens comes from the KVCache or PagedKV (its lengths); do not pass it with one`,
    );
  }
  live(op, "q", q);
  if (q.shape.length !== 4) {
    throw new ShapeError(`${op}: q must have rank 4 ([B, Hq, Sq, D]), got ${fmt(q.shape)}`);
  }
  const view = kv[PAGED_VIEW](op);
  if (view.backend !== q.backend) {
    throw new BackendMismatchError(
      `${op}: q is on ${q.backend.name}, the paged K/V on ${view.backend.name}`,
    );
  }
  const { pageSize, maxBlocks } = view.layout;
  const N = maxBlocks * pageSize;
  const shapes = `q ${fmt(q.shape)}, paged K/V of ${view.B} sequences × ${view.Hkv} heads × ` +
    `D = ${view.D}`;
  checkKV(op, q, { Bk: view.B, Hkv: view.Hkv, Dk: view.D, dtype: view.dtype, shapes });
  const p = resolve(op, q, view.Hkv, N, Int32Array.from(view.kvLens), opts);
  return {
    ...p,
    k: view.kPages[0],
    v: view.vPages[0],
    paged: view.layout,
    pages: pagesInfo(view),
    ...isQuantDType(view.dtype) && { kvScales: "token" as const },
    opts,
  };
}

/** q against K/V's batch, heads, head dim and dtype. */
function checkKV(
  op: string,
  q: Tensor,
  kv: { Bk: number; Hkv: number; Dk: number; dtype: string; shapes: string },
): void {
  if (isQuantDType(kv.dtype as DType)) {
    // Quantized K/V go with a float32 or float16 q (they dequantize to float32).
    if (isQuantDType(q.dtype)) {
      throw new DTypeError(
        `${op}: q must be float32 or float16 with ${kv.dtype} k/v, got q ${q.dtype}`,
      );
    }
  } else if (q.dtype !== kv.dtype) {
    // One rule for every algorithm (naive composes ops, which need equal dtypes): cast first.
    throw new DTypeError(
      `${op}: q, k and v must have one dtype, got q ${q.dtype} and k/v ${kv.dtype} (use cast)`,
    );
  }
  const [B, Hq, Sq, D] = q.shape;
  const { Hkv, shapes } = kv;
  if (kv.Bk !== B) throw new ShapeError(`${op}: batch of q and k/v differ: ${shapes}`);
  if (kv.Dk !== D) throw new ShapeError(`${op}: head dim D of q and k/v differ: ${shapes}`);
  if (B < 1 || Hq < 1 || Sq < 1 || D < 1 || Hkv < 1) {
    throw new ShapeError(`${op}: B, Hq, Hkv, Sq and D must be ≥ 1, got ${shapes}`);
  }
  if (Hq % Hkv !== 0) {
    throw new ShapeError(`${op}: Hq must be a multiple of Hkv (GQA), got Hq=${Hq}, Hkv=${Hkv}`);
  }
}

/** The common options and the variant, resolved. */
function resolve(
  op: string,
  q: Tensor,
  Hkv: number,
  N: number,
  kvLens: Int32Array,
  opts: Partial<AttentionOptions>,
): Omit<AttentionProblem, "k" | "v"> {
  const [B, Hq, Sq, D] = q.shape;
  let scale = 1 / Math.sqrt(D);
  if (opts.scale !== undefined) {
    if (typeof opts.scale !== "number" || !Number.isFinite(opts.scale)) {
      throw new ArgumentError(`${op}: scale must be a finite number, got ${show(opts.scale)}`);
    }
    scale = opts.scale;
  }
  if (opts.causal !== undefined && typeof opts.causal !== "boolean") {
    throw new ArgumentError(`${op}: causal must be a boolean, got ${show(opts.causal)}`);
  }
  if (opts.returnLse !== undefined && typeof opts.returnLse !== "boolean") {
    throw new ArgumentError(`${op}: returnLse must be a boolean, got ${show(opts.returnLse)}`);
  }
  const backend = computeBackend(op, q.backend);
  const variant = resolveVariant(op, opts, { B, Hq, Sq, N }, backend);
  return {
    backend,
    B,
    Hq,
    Hkv,
    Sq,
    N,
    D,
    scale,
    causal: opts.causal ?? false,
    kvLens,
    returnLse: opts.returnLse ?? false,
    variant,
  };
}
