/**
 * The device side of `KVCache`: checking an append before anything is written, writing new
 * tokens into their pages, and copying a shared page (copy on write).
 *
 * @module
 */
import type { PagedLayout } from "../schedule/attention_plan.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DTypeError,
  LimitError,
  ShapeError,
  show,
} from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { live } from "../ops/_util.ts";
import { type DType, isQuantDType, type QuantDType } from "../tensor/dtype.ts";
import { scaleShape } from "../tensor/quant_format.ts";
import { bufferOf, bufferRows, infoOf, type PagedBackend } from "./_paged_view.ts";

/** What an append is checked against. */
interface CacheDims {
  readonly batch: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly dtype: string;
}

/**
 * Checks k, v `[B, Hkv, S, D]` and `lens` against the cache; returns S and the tokens each
 * sequence takes. Throws before anything is written.
 */
export function checkAppend(
  op: string,
  cache: CacheDims,
  backend: PagedBackend,
  k: unknown,
  v: unknown,
  lens: unknown,
): { S: number; take: Int32Array } {
  const kt = live(op, "k", k);
  const vt = live(op, "v", v);
  // A quantized cache takes float32 or float16 tokens and quantizes them as they come.
  const quant = isQuantDType(cache.dtype as DType);
  const { batch: B, kvHeads: Hkv, headDim: D } = cache;
  for (const [name, t] of [["k", kt], ["v", vt]] as const) {
    const s = t.shape;
    if (s.length !== 4 || s[0] !== B || s[1] !== Hkv || s[3] !== D || s[2] < 1) {
      throw new ShapeError(
        `${op}: ${name} must be [B = ${B}, Hkv = ${Hkv}, S, D = ${D}] with S ≥ 1, got ${fmt(s)}`,
      );
    }
    if (t.backend !== backend) {
      throw new BackendMismatchError(
        `${op}: ${name} is on ${t.backend.name}, the cache on ${backend.name}`,
      );
    }
    if (!quant && t.dtype !== cache.dtype) { // (live() took only float32, float16)
      throw new DTypeError(
        `${op}: ${name} is ${t.dtype} but the cache stores ${cache.dtype} (use cast())`,
      );
    }
    if (backend.storageParts?.(infoOf(t))) {
      throw new LimitError(
        `${op}: ${name} ${fmt(s)} is larger than one device buffer binding; append it in ` +
          `smaller chunks`,
      );
    }
  }
  if (kt.shape[2] !== vt.shape[2]) {
    throw new ShapeError(
      `${op}: k and v must have the same shape, got ${fmt(kt.shape)} and ${fmt(vt.shape)}`,
    );
  }
  const S = kt.shape[2];
  if (lens === undefined) return { S, take: new Int32Array(B).fill(S) };
  if (!Array.isArray(lens) || lens.length !== B) {
    throw new ArgumentError(
      `${op}: lens must be an array of ${B} token counts (one per sequence), got ${show(lens)}`,
    );
  }
  const take = Int32Array.from(lens, (n, b) => {
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0 || n > S) {
      throw new ArgumentError(`${op}: lens[${b}] must be an integer in [0, ${S}], got ${show(n)}`);
    }
    return n;
  });
  return { S, take };
}

/**
 * Writes tokens `t < take[b]` of `src` `[B, Hkv, S, D]` as tokens `start[b] + t` of sequence
 * b into the page buffers `pages` (in place, one scatter per buffer the tokens land in).
 */
export function writeTokens(
  backend: PagedBackend,
  layout: PagedLayout,
  table: Int32Array,
  pages: readonly Tensor[],
  src: Tensor,
  start: Int32Array,
  take: Int32Array,
  S: number,
): void {
  const rows = bufferRows(layout, table, start, take, S);
  rows.forEach((r, c) => {
    if (r) backend.scatterPageRows(infoOf(pages[c]), infoOf(src), r);
  });
}

/** Copies the first `n` rows of page `from` into page `to` (gather, then scatter). */
export function copyPage(
  backend: PagedBackend,
  layout: Omit<PagedLayout, "maxBlocks">,
  pages: readonly Tensor[],
  from: number,
  to: number,
  n: number,
): void {
  const { pageSize } = layout;
  const [cf, lf] = bufferOf(layout, from);
  const [ct, lt] = bufferOf(layout, to);
  const src = Int32Array.from({ length: n }, (_, s) => lf * pageSize + s);
  const dst = Int32Array.from({ length: n }, (_, s) => lt * pageSize + s);
  const p = pages[cf];
  const id = backend.gatherPageRows(infoOf(p), src, 1, n);
  const rows = new Tensor(backend, id, [1, p.shape[1], n, p.shape[3]], p.dtype);
  try {
    backend.scatterPageRows(infoOf(pages[ct]), infoOf(rows), dst);
  } finally {
    rows.dispose();
  }
}

/**
 * Quantizes appended tokens x `[B, Hkv, S, D]` on the device with one scale per (token, kv
 * head) for both formats — a cache cannot know the maxima of tokens still to come, so even
 * float8e4m3 scales are per token here (`quantize`'s are per head). The backend's quantize
 * primitive sees x as `[B, Hkv·S, 1, D]`: every block is then one token's row. Returns the
 * data `[B, Hkv, S, D]` and the scales as `[B, Hkv, S, 1]` rows for `scatterPageRows` (D = 1);
 * the caller disposes both.
 */
export function quantizeTokens(
  backend: PagedBackend,
  x: Tensor,
  dtype: QuantDType,
): { data: Tensor; scale: Tensor } {
  const [B, H, S, D] = x.shape;
  const rows = [B, H * S, 1, D];
  const r = backend.quantize({ id: x.id, shape: rows, dtype: x.dtype }, dtype);
  const scale = new Tensor(backend, r.scale, scaleShape(dtype, rows), "float32");
  try {
    return {
      data: new Tensor(backend, r.data, x.shape, dtype),
      scale: scale.reshape([B, H, S, 1]),
    };
  } finally {
    scale.dispose(); // the reshape keeps the storage
  }
}
