/**
 * The attention variant options (`window`, `softcap`, `sinks`, `alibiSlopes`, `bias`; the math
 * is VARIANTS.md in the design notes): validated once into an {@link AttentionVariant} (what
 * the plan and its cache key hold) and the tensors the kernels read (what the plan does not
 * hold: the sink and slope values and the bias contents may change between calls of one plan).
 *
 * @module
 */
import { Tensor } from "../tensor/tensor.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DTypeError,
  ShapeError,
  show,
} from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import { fromValues } from "../tensor/creation.ts";
import type { AttentionInputs, TensorBackend } from "../backends/backend.ts";
import {
  type AttentionVariant,
  isPlainVariant,
  PLAIN_ATTENTION,
} from "../schedule/attention_plan.ts";

/**
 * A sliding window: a query row at position `p` sees keys at positions `p − left ..
 * p + right` (both ends included; an absent side is unlimited). Mappings from other
 * libraries: FlashAttention's `window_size=(l, r)` is `{ left: l, right: r }` with `-1` meaning
 * absent; ONNX Runtime's `local_window_size = W` is `{ left: W }` with `causal: true`; a
 * model card's "sliding window of W tokens" (counting the current token) is `{ left: W − 1 }`
 * with `causal: true` (see `windowFromFlashAttention`, `windowFromOnnxRuntime`,
 * `windowFromModelCard`).
 */
export interface AttentionWindow {
  /** Keys at most this many positions before the query (default: unlimited). */
  left?: number;
  /** Keys at most this many positions after the query (default: unlimited). */
  right?: number;
}

/**
 * The variant options every attention op takes (`naiveAttention`, `flashAttention` with any
 * `numSplits`, `leanAttention`), in any combination with `causal`, GQA and ragged `kvLens`.
 * The score of query i and key j is, in this order: `scale · q·k`, soft-cap, ALiBi, bias; then
 * causal and the window decide which keys are visible; sinks join the softmax.
 */
export interface VariantOptions {
  /**
   * Sliding window ({@link AttentionWindow}). Keys outside every row's window are neither
   * seen nor read: the schedule covers only visible key ranges, so a decode step with
   * `{ left: 4096 }` over a 512k-token cache reads about 4k keys a head.
   *
   * @example
   * ```ts
   * import { flashAttention, randn } from "../mod.ts";
   * const q = randn([1, 2, 1, 16], { seed: 1 });
   * const k = randn([1, 2, 1000, 16], { seed: 2 });
   * const v = randn([1, 2, 1000, 16], { seed: 3 });
   * // Mistral-style: the query and the 4 keys before it (a window of 5 tokens).
   * const out = flashAttention(q, k, v, { causal: true, window: { left: 4 } });
   * console.log(out.shape); // [1, 2, 1, 16]
   * ```
   */
  window?: AttentionWindow;
  /**
   * Logit soft-cap `c > 0`: `s = c · tanh(s / c)` after scaling (Gemma 2: 50; FlashAttention's
   * and ONNX Runtime's `softcap` mean the same).
   *
   * @example
   * ```ts
   * import { leanAttention, randn } from "../mod.ts";
   * const q = randn([1, 2, 1, 16], { seed: 1 });
   * const k = randn([1, 2, 64, 16], { seed: 2 });
   * const out = leanAttention(q, k, k, { softcap: 50 });
   * console.log(out.shape); // [1, 2, 1, 16]
   * ```
   */
  softcap?: number;
  /**
   * One sink logit per query head (`[Hq]`, numbers or a float32 tensor): a softmax term
   * `exp(z_h)` with no value (gpt-oss). All zeros is ONNX Runtime's "smooth softmax".
   *
   * @example
   * ```ts
   * import { flashAttention, randn } from "../mod.ts";
   * const q = randn([1, 2, 1, 16], { seed: 1 });
   * const k = randn([1, 2, 0, 16], { seed: 2 }); // no keys: only the sink is left
   * const { lse } = flashAttention(q, k, k, { sinks: [0.5, -1], returnLse: true });
   * console.log(await lse.toArray()); // [[[0.5], [-1]]]
   * ```
   */
  sinks?: readonly number[] | Tensor;
  /**
   * ALiBi: one slope per query head (`[Hq]`): `s −= slope_h · |p_i − j|` (MPT, BLOOM; the
   * usual slopes are `2^(−8h/Hq)` for h = 1..Hq).
   *
   * @example
   * ```ts
   * import { flashAttention, randn } from "../mod.ts";
   * const q = randn([1, 4, 1, 16], { seed: 1 });
   * const k = randn([1, 4, 32, 16], { seed: 2 });
   * const slopes = [1, 2, 3, 4].map((h) => 2 ** (-8 * h / 4));
   * const out = flashAttention(q, k, k, { causal: true, alibiSlopes: slopes });
   * console.log(out.shape); // [1, 4, 1, 16]
   * ```
   */
  alibiSlopes?: readonly number[] | Tensor;
  /**
   * Additive bias, float32 or float16, broadcastable to `[B, Hq, Sq, N]` (size-1 or missing
   * leading dims broadcast; `−Infinity` hides a key; T5's relative-position bias), on q's
   * backend.
   *
   * @example
   * ```ts
   * import { leanAttention, randn, tensor } from "../mod.ts";
   * const q = randn([1, 1, 2, 8], { seed: 1 });
   * const k = randn([1, 1, 3, 8], { seed: 2 });
   * // [Sq, N] = [2, 3], broadcast over batch and heads; row 0 may not see key 2.
   * const bias = tensor([[0, 0.5, -Infinity], [0, 0.5, 1]]);
   * const out = leanAttention(q, k, k, { bias });
   * console.log(out.shape); // [1, 1, 2, 8]
   * ```
   */
  bias?: Tensor;
}

/** The variant option names. */
export const VARIANT_OPTIONS = ["window", "softcap", "sinks", "alibiSlopes", "bias"] as const;

/** A per-head vector option as given: numbers (checked finite) or a float32 tensor. */
type HeadVector = Float32Array | Tensor;

/** The resolved variant and where its tensors come from. */
export interface ResolvedVariant {
  variant: AttentionVariant;
  sinks: HeadVector | null;
  alibiSlopes: HeadVector | null;
  /** The bias tensor and its shape padded to rank 4. */
  bias: { t: Tensor; shape: number[] } | null;
}

function windowSide(op: string, name: string, v: unknown): number {
  if (v === undefined || v === Infinity) return Infinity;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new ArgumentError(
      `${op}: window.${name} must be a non-negative integer (keys ${
        name === "left" ? "before" : "after"
      } the query; leave it out for no limit), got ${show(v)}`,
    );
  }
  return v;
}

/**
 * A per-head option (`sinks`, `alibiSlopes`): `Hq` finite numbers (returned as float32) or a
 * float32 tensor `[Hq]` on `backend`; throws named errors.
 */
export function headVector(
  op: string,
  name: string,
  v: unknown,
  Hq: number,
  backend: TensorBackend,
): HeadVector {
  if (v instanceof Tensor) {
    v.id; // throws DisposedTensorError
    if (v.backend !== backend) {
      throw new BackendMismatchError(
        `${op}: ${name} must be on q's backend ${backend.name}, got ${v.backend.name}`,
      );
    }
    if (v.shape.length !== 1 || v.shape[0] !== Hq) {
      throw new ShapeError(`${op}: ${name} must have shape [${Hq}] (Hq), got ${fmt(v.shape)}`);
    }
    if (v.dtype !== "float32") {
      throw new DTypeError(`${op}: ${name} must be float32, got ${v.dtype}`);
    }
    return v;
  }
  if (!Array.isArray(v) || v.length !== Hq) {
    throw new ArgumentError(
      `${op}: ${name} must be ${Hq} numbers (one per query head) or a float32 tensor [${Hq}], got ${
        Array.isArray(v) ? `${v.length} numbers` : show(v)
      }`,
    );
  }
  v.forEach((x, h) => {
    if (typeof x !== "number" || !Number.isFinite(x)) {
      throw new ArgumentError(`${op}: ${name}[${h}] must be a finite number, got ${show(x)}`);
    }
  });
  return Float32Array.from(v);
}

/**
 * Validates the variant options against q `[B, Hq, Sq, ·]` and N keys; throws named errors.
 * Returns {@link PLAIN_ATTENTION} (and no tensors) when none is given.
 */
export function resolveVariant(
  op: string,
  opts: Partial<VariantOptions>,
  dims: { B: number; Hq: number; Sq: number; N: number },
  backend: TensorBackend,
): ResolvedVariant {
  const none = { variant: PLAIN_ATTENTION, sinks: null, alibiSlopes: null, bias: null };
  if (VARIANT_OPTIONS.every((n) => opts[n] === undefined)) return none;
  let windowLeft = Infinity;
  let windowRight = Infinity;
  if (opts.window !== undefined) {
    const w = opts.window as unknown;
    if (w === null || typeof w !== "object" || Array.isArray(w)) {
      throw new ArgumentError(`${op}: window must be an object { left?, right? }, got ${show(w)}`);
    }
    const extra = Object.keys(w).filter((key) => key !== "left" && key !== "right");
    if (extra.length) {
      throw new ArgumentError(
        `${op}: window takes only left and right, got ${JSON.stringify(extra[0])}`,
      );
    }
    const { left, right } = w as Record<string, unknown>;
    windowLeft = windowSide(op, "left", left);
    windowRight = windowSide(op, "right", right);
  }
  let softcap = 0;
  if (opts.softcap !== undefined) {
    const c = opts.softcap;
    if (typeof c !== "number" || !Number.isFinite(c) || c <= 0) {
      throw new ArgumentError(
        `${op}: softcap must be a finite number > 0 (leave it out for none), got ${show(c)}`,
      );
    }
    softcap = c;
  }
  const sinks = opts.sinks === undefined
    ? null
    : headVector(op, "sinks", opts.sinks, dims.Hq, backend);
  const alibiSlopes = opts.alibiSlopes === undefined
    ? null
    : headVector(op, "alibiSlopes", opts.alibiSlopes, dims.Hq, backend);
  const bias = opts.bias === undefined ? null : resolveBias(op, opts.bias, dims, backend);
  const variant: AttentionVariant = Object.freeze({
    windowLeft,
    windowRight,
    softcap,
    sinks: sinks !== null,
    alibi: alibiSlopes !== null,
    bias: bias && Object.freeze({ shape: Object.freeze(bias.shape), dtype: bias.t.dtype }),
  });
  // E.g. `window: {}`: textbook attention, planned and run as such.
  return isPlainVariant(variant) ? none : { variant, sinks, alibiSlopes, bias };
}

function resolveBias(
  op: string,
  t: unknown,
  { B, Hq, Sq, N }: { B: number; Hq: number; Sq: number; N: number },
  backend: TensorBackend,
): { t: Tensor; shape: number[] } {
  if (!(t instanceof Tensor)) {
    throw new ArgumentError(`${op}: bias must be a Tensor, got ${show(t)}`);
  }
  t.id; // throws DisposedTensorError
  if (t.backend !== backend) {
    throw new BackendMismatchError(
      `${op}: bias must be on q's backend ${backend.name}, got ${t.backend.name}`,
    );
  }
  if (t.dtype !== "float32" && t.dtype !== "float16") {
    throw new DTypeError(`${op}: bias must be float32 or float16, got ${t.dtype}`);
  }
  const full = [B, Hq, Sq, N];
  const shape = [...Array(Math.max(0, 4 - t.rank)).fill(1), ...t.shape];
  if (t.rank > 4 || shape.some((d, i) => d !== 1 && d !== full[i])) {
    throw new ShapeError(
      `${op}: bias ${fmt(t.shape)} does not broadcast to [B, Hq, Sq, N] = ${fmt(full)} ` +
        `(each dim must be 1 or equal)`,
    );
  }
  return { t, shape };
}

/**
 * The kernel inputs of a resolved variant on `backend`, and a function that frees what was
 * made for this call (number arrays become small float32 tensors for the call).
 */
export function variantInputs(
  r: ResolvedVariant,
  backend: TensorBackend,
): { inputs: AttentionInputs | undefined; free(): void } {
  if (!r.sinks && !r.alibiSlopes && !r.bias) return { inputs: undefined, free: () => {} };
  const made: Tensor[] = [];
  const tensorOf = (v: HeadVector): Tensor => {
    if (v instanceof Tensor) return v;
    const t = fromValues(Float32Array.from(v), [v.length], { backend });
    made.push(t);
    return t;
  };
  const info = (t: Tensor, shape = t.shape) => ({ id: t.id, shape, dtype: t.dtype });
  const free = () => made.forEach((t) => t.dispose());
  try {
    const inputs: AttentionInputs = {
      ...(r.sinks ? { sinks: info(tensorOf(r.sinks)) } : {}),
      ...(r.alibiSlopes ? { alibiSlopes: info(tensorOf(r.alibiSlopes)) } : {}),
      ...(r.bias ? { bias: info(r.bias.t, r.bias.shape) } : {}),
    };
    return { inputs, free };
  } catch (e) {
    free();
    throw e;
  }
}

/** The plan cache key of a variant: every field but the sink/slope values and bias contents. */
export function variantKey(v: AttentionVariant): string {
  if (isPlainVariant(v)) return "plain";
  const bias = v.bias ? `${v.bias.shape.join("x")}:${v.bias.dtype}` : "-";
  return `w${v.windowLeft},${v.windowRight}|c${v.softcap}|s${+v.sinks}|a${+v.alibi}|b${bias}`;
}
