/**
 * `mergeAttentionStates`: the merge of partial attention results, as an op. Attention over a
 * union of disjoint key sets equals the merge of the attention over each set, given each
 * part's normalised output and natural-log LSE — so users can compose attention over chunks,
 * pages or devices of a KV cache themselves.
 *
 * @module
 */
import { Tensor } from "../tensor/tensor.ts";
import { checkComputeDType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DTypeError,
  ShapeError,
  show,
} from "../tensor/errors.ts";
import { fmt, type Shape } from "../tensor/shape.ts";
import { readOptions } from "../tensor/options.ts";
import { fromValues, zeros } from "../tensor/creation.ts";
import { add } from "../ops/binary.ts";
import type { TensorInfo } from "../backends/backend.ts";
import { headVector } from "./_variant.ts";

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** An attention result in the mergeable public form. */
export interface AttentionState {
  /** Normalised output `[..., D]`. */
  out: Tensor;
  /** Natural-log sum of exponentials `[...]` (out's shape without D), float32; −∞ = no keys. */
  lse: Tensor;
}

/** Options of {@link mergeAttentionStates}. */
export interface MergeOptions {
  /**
   * Sink logits, one per head (`[Hq]`: numbers or a float32 tensor; states are then
   * `[B, Hq, Sq, D]`-like, heads on axis 1): the sink state `(out = 0, lse = z_h)` is merged
   * once, after the states. Attention with sinks over a KV cache cut into pieces is the
   * pieces' attention without sinks, merged with `{ sinks }`.
   *
   * @example
   * ```ts
   * import { flashAttention, mergeAttentionStates, randn } from "../mod.ts";
   * const q = randn([1, 2, 1, 16], { seed: 1 });
   * const k1 = randn([1, 2, 40, 16], { seed: 2 });
   * const k2 = randn([1, 2, 60, 16], { seed: 3 });
   * const pieces = [flashAttention(q, k1, k1, { returnLse: true }),
   *   flashAttention(q, k2, k2, { returnLse: true })];
   * // = flashAttention over all 100 keys with { sinks: [0.5, -1] }
   * const { out } = mergeAttentionStates(pieces, { sinks: [0.5, -1] });
   * console.log(out.shape); // [1, 2, 1, 16]
   * ```
   */
  sinks?: readonly number[] | Tensor;
}

/**
 * Merges attention states over disjoint key sets, folding them in list order (so the result
 * is deterministic). A state with `lse = −∞` is the identity. The output has the first
 * `out`'s dtype; the LSE is float32. With `sinks`, the sink term joins the softmax exactly
 * once, after every state.
 *
 * @example
 * ```ts
 * import { flashAttention, mergeAttentionStates, randn } from "../mod.ts";
 * // A KV cache held in two chunks: attend to each, then merge.
 * const q = randn([1, 2, 1, 16], { seed: 1 });
 * const [k1, v1] = [randn([1, 2, 40, 16], { seed: 2 }), randn([1, 2, 40, 16], { seed: 3 })];
 * const [k2, v2] = [randn([1, 2, 60, 16], { seed: 4 }), randn([1, 2, 60, 16], { seed: 5 })];
 * const a = flashAttention(q, k1, v1, { returnLse: true });
 * const b = flashAttention(q, k2, v2, { returnLse: true });
 * const { out, lse } = mergeAttentionStates([a, b]); // attention over all 100 keys
 * console.log(out.shape, lse.shape); // [1, 2, 1, 16] [1, 2, 1]
 * ```
 */
export function mergeAttentionStates(
  states: readonly AttentionState[],
  options?: MergeOptions,
): AttentionState {
  const op = "mergeAttentionStates";
  const opts = readOptions<MergeOptions>(op, options, ["sinks"]);
  if (!Array.isArray(states) || states.length === 0) {
    throw new ArgumentError(
      `${op}: expected a non-empty array of {out, lse} states, got ${
        Array.isArray(states) ? "an empty array" : show(states)
      }`,
    );
  }
  states.forEach((s, i) => {
    if (
      !s || typeof s !== "object" || !(s.out instanceof Tensor) ||
      !(s.lse instanceof Tensor)
    ) {
      throw new ArgumentError(`${op}: states[${i}] must be {out: Tensor, lse: Tensor}`);
    }
    s.out.id; // throws DisposedTensorError
    s.lse.id;
  });
  const first = states[0].out;
  if (first.rank < 1) {
    throw new ShapeError(`${op}: out must have rank ≥ 1 ([..., D]), got ${fmt(first.shape)}`);
  }
  checkComputeDType(op, first.dtype, "states[0].out");
  const lseShape = first.shape.slice(0, -1);
  states.forEach(({ out, lse }, i) => {
    if (out.backend !== first.backend || lse.backend !== first.backend) {
      throw new BackendMismatchError(
        `${op}: all states must be on one backend, states[0] is on ${first.backend.name}, ` +
          `states[${i}] has out on ${out.backend.name} and lse on ${lse.backend.name}`,
      );
    }
    if (!sameShape(out.shape, first.shape)) {
      throw new ShapeError(
        `${op}: every out must have shape ${fmt(first.shape)}, states[${i}].out is ${
          fmt(out.shape)
        }`,
      );
    }
    if (!sameShape(lse.shape, lseShape)) {
      throw new ShapeError(
        `${op}: lse must have out's shape without the last dim, ${
          fmt(lseShape)
        }, states[${i}].lse is ${fmt(lse.shape)}`,
      );
    }
    if (lse.dtype !== "float32") {
      throw new DTypeError(`${op}: lse must be float32, states[${i}].lse is ${lse.dtype}`);
    }
    if (out.dtype !== first.dtype) {
      throw new DTypeError(
        `${op}: every out must have one dtype, states[0].out is ${first.dtype}, states[${i}].out is ${out.dtype}`,
      );
    }
  });
  const info = (t: Tensor): TensorInfo => ({ id: t.id, shape: t.shape, dtype: t.dtype });
  const backend = first.backend;
  const outs = states.map((s) => info(s.out));
  const lses = states.map((s) => info(s.lse));
  const temps: Tensor[] = [];
  try {
    if (opts.sinks !== undefined) {
      if (first.rank < 3) {
        throw new ShapeError(
          `${op}: with sinks, out must be [B, Hq, Sq, D]-like (heads on axis 1), got ${
            fmt(first.shape)
          }`,
        );
      }
      const Hq = first.shape[1];
      const z = headVector(op, "sinks", opts.sinks, Hq, backend);
      const zt = z instanceof Tensor ? z : temps[temps.push(fromValues(z, [Hq], { backend })) - 1];
      // The sink as a state: out = 0, lse = z_h broadcast over the other axes.
      const zView = zt.reshape([1, Hq, ...lseShape.slice(2).map(() => 1)]);
      const base = zeros(lseShape, { backend });
      temps.push(zView, base);
      const sinkLse = add(base, zView);
      const sinkOut = zeros(first.shape, { backend, dtype: first.dtype });
      temps.push(sinkLse, sinkOut);
      outs.push(info(sinkOut));
      lses.push(info(sinkLse));
    }
    const r = backend.mergeStates(outs, lses);
    return {
      out: new Tensor(backend, r.out, first.shape, first.dtype),
      lse: new Tensor(backend, r.lse, lseShape, "float32"),
    };
  } finally {
    for (const t of temps) t.dispose();
  }
}
