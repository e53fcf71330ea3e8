/**
 * The plan of one attention call, as plain data: what `attention/` computes once from the
 * shapes, lengths, options and the device's facts, and what a backend executes in one call.
 * FlashInfer's `plan()`/`run()` split is the model: planning validates and partitions,
 * running only encodes work, so a plan made once serves every call of the same shape (every
 * layer of a decode step) and can be inspected (`renderSchedule(plan.schedule)`).
 *
 * K/V stored in parts across device buffers (a WebGPU tensor over one storage binding) is
 * planned as several runs, one per part (a part's lengths are `clamp(kvLens[b] − n0, 0,
 * n1 − n0)`), whose states the backend merges in key order: attention over the union of
 * disjoint key sets is the merge of the attention over each set.
 *
 * @module
 */
import type { DType } from "../tensor/dtype.ts";
import type { LeanSchedule } from "./lean_schedule.ts";

/**
 * The score and visibility changes of a call, resolved (the math: VARIANTS.md in the design
 * notes; in order: scale → soft-cap → ALiBi → bias → visibility → softmax with sinks). With
 * {@link PLAIN_ATTENTION} a kernel computes textbook attention.
 *
 * Positions: query row `i` of batch entry `b` sits at `p_i = positionLens[b] − Sq + i`; key
 * `j` of a run sits at `keyOffset + j` (see {@link AttentionRun}).
 */
export interface AttentionVariant {
  /** A row at position p sees keys at positions ≥ p − windowLeft (Infinity: no limit). */
  readonly windowLeft: number;
  /** A row at position p sees keys at positions ≤ p + windowRight (Infinity: no limit). */
  readonly windowRight: number;
  /** Soft-cap `c`: `s = c · tanh(s / c)` after scaling (0: none). */
  readonly softcap: number;
  /** One sink logit per query head (`inputs.sinks`, float32 `[Hq]`) joins the softmax. */
  readonly sinks: boolean;
  /** ALiBi: `s −= slope_h · |p_i − key position|` (`inputs.alibiSlopes`, float32 `[Hq]`). */
  readonly alibi: boolean;
  /**
   * Additive bias (`inputs.bias`) of this 4-D shape, broadcastable to `[B, Hq, Sq, N]` (a
   * size-1 dim broadcasts; the last dim indexes key positions), or null for none.
   */
  readonly bias: { readonly shape: readonly number[]; readonly dtype: DType } | null;
}

/** Textbook attention: no window, soft-cap, sinks, ALiBi or bias. */
export const PLAIN_ATTENTION: AttentionVariant = Object.freeze({
  windowLeft: Infinity,
  windowRight: Infinity,
  softcap: 0,
  sinks: false,
  alibi: false,
  bias: null,
});

/**
 * Whether `v` is textbook attention, by its fields (a variant copied to a worker thread is no
 * longer the {@link PLAIN_ATTENTION} object itself).
 */
export function isPlainVariant(v: AttentionVariant): boolean {
  return typeof v === "object" && v !== null && v.windowLeft === Infinity &&
    v.windowRight === Infinity && v.softcap === 0 && !v.sinks && !v.alibi && !v.bias;
}

/**
 * Where paged K/V live (VARIANTS.md, "Paged KV"): token `j` of sequence `b` is row
 * `j mod pageSize` of page `blockTable[b · maxBlocks + ⌊j / pageSize⌋]` of the pages
 * `[P, Hkv, pageSize, D]`. Pages may span several device buffers ("page buffers"): page `p`
 * is page `p − c · pagesPerBuffer` of buffer `c = ⌊p / pagesPerBuffer⌋`; every buffer but the
 * last holds exactly `pagesPerBuffer` pages. A plan over pages has one run (no K/V parts); a
 * run's key `j` is the sequence's token `j` (positions as for whole K/V).
 */
export interface PagedLayout {
  /** Tokens per page (≥ 1). */
  readonly pageSize: number;
  /** Block-table entries per sequence: the table is int32 `[B, maxBlocks]`. */
  readonly maxBlocks: number;
  /** Pages in every page buffer but the last. */
  readonly pagesPerBuffer: number;
  /** Page buffers of K (V has as many, laid out alike). */
  readonly buffers: number;
  /** Pages in all (`P`). */
  readonly pages: number;
}

/** The algorithm a schedule came from (a backend may pick its kernel by it). */
export type AttentionAlgo = "flash" | "flash-decoding" | "lean";

/**
 * One execution of an attention kernel over one K/V store (the whole of k and v, or one of
 * their parts): everything a kernel needs, already validated and resolved.
 */
export interface AttentionRun {
  /** Which algorithm produced the schedule. */
  readonly algo: AttentionAlgo;
  /** Multiplier of q·k. */
  readonly scale: number;
  /** Bottom-right aligned causal mask (aligned to this run's lengths). */
  readonly causal: boolean;
  /** Valid keys per batch entry of this run's K/V (`0..N`). */
  readonly kvLens: Int32Array;
  /** The partition of the work: who runs which tiles, which pieces merge in which order. */
  readonly schedule: LeanSchedule;
  /** Score and visibility changes ({@link PLAIN_ATTENTION} for none). */
  readonly variant: AttentionVariant;
  /**
   * Position of this run's key 0: the first key of its K/V part (0 when K/V are whole). A
   * run's key `j` is at position `keyOffset + j` for causal masking, windows, ALiBi and bias.
   */
  readonly keyOffset: number;
  /**
   * Per batch entry, the length that query positions align to (`p_i = positionLens[b] − Sq
   * + i`): the call's `kvLens` — for a part run too, so positions stay those of the whole
   * call while `kvLens` counts the part's own valid keys.
   */
  readonly positionLens: Int32Array;
  /** The K/V part this run reads (index into {@link AttentionPlan.parts}); absent: whole. */
  readonly part?: number;
  /** Present when K/V are paged: the pages' layout (the plan's {@link AttentionPlan.paged}). */
  readonly paged?: PagedLayout;
  /**
   * What the backend prepared for this run once, at planning time (kernel choice, packed
   * schedule metadata, launch sizes): opaque here, read only by the backend that made it.
   */
  prepared?: unknown;
}

/** The plan of one attention call. */
export interface AttentionPlan {
  /** The algorithm. */
  readonly algo: AttentionAlgo;
  /** Shape of q `[B, Hq, Sq, D]`. */
  readonly qShape: readonly number[];
  /** Shape of k and v `[B, Hkv, N, D]`. */
  readonly kvShape: readonly number[];
  /** Storage dtype of q (and of the output). */
  readonly qDtype: DType;
  /** Storage dtype of k and v (`int8`/`float8e4m3`: quantized, see {@link AttentionPlan.kvScales}). */
  readonly kvDtype: DType;
  /**
   * Quantized K/V only (VARIANTS.md, "Quantized KV"): where their float32 scales vary —
   * `"token"`, one per (batch, kv head, key) (int8 from `quantize`; every paged cache), or
   * `"head"`, one per (batch, kv head) (float8e4m3 from `quantize`). Key j of (b, h) is
   * `scale · stored value`; the kernels dequantize in registers and accumulate in float32.
   */
  readonly kvScales?: "token" | "head";
  /**
   * The dtype of q as the kernel runs read it and of their partial outputs: q's, except
   * where several part runs merge (float16 is storage only: they run on a float32 copy of q
   * and merge float32 states).
   */
  readonly runDtype: DType;
  /** Multiplier of q·k. */
  readonly scale: number;
  /** Bottom-right aligned causal mask. */
  readonly causal: boolean;
  /** Valid keys per batch entry. */
  readonly kvLens: Int32Array;
  /** The schedule over the whole key axis (what `renderSchedule` draws). */
  readonly schedule: LeanSchedule;
  /**
   * The call's variant (absent: {@link PLAIN_ATTENTION}). Runs over K/V parts carry it
   * without the sink (`sinks: false`): the sink state is merged once, after the parts.
   */
  readonly variant?: AttentionVariant;
  /**
   * Present when K/V are paged (then `kvShape` is `[B, Hkv, maxBlocks · pageSize, D]`,
   * `parts` is null and there is one run).
   */
  readonly paged?: PagedLayout;
  /** Key ranges `[n0, n1)` of the K/V parts, or null when K/V are stored whole. */
  readonly parts: readonly { readonly n0: number; readonly n1: number }[] | null;
  /**
   * The kernel runs, merged in this order when there are several (K/V in parts). With a
   * single run whose `part` is absent, the plan is the schedule over the whole K/V.
   */
  readonly runs: readonly AttentionRun[];
}

/**
 * A run over whole K/V with textbook attention (variant, key offset and position lengths at
 * their defaults): what tests, probes and the benchmark hand a kernel directly.
 */
export function plainRun(
  r: Pick<AttentionRun, "algo" | "scale" | "causal" | "kvLens" | "schedule">,
): AttentionRun {
  return { ...r, variant: PLAIN_ATTENTION, keyOffset: 0, positionLens: r.kvLens };
}
