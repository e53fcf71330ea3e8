/**
 * What `PagedKV` and `KVCache` have in common for an attention call: pages, a block table on
 * the device and the lengths (VARIANTS.md, "Paged KV"). Attention reads K/V through this view
 * only, so the two public types stay free to keep their own bookkeeping.
 *
 * @module
 */
import type { Backend, DataId, PagedKVInfo, TensorInfo } from "../backends/backend.ts";
import type { PagedLayout } from "../schedule/attention_plan.ts";
import type { DType, QuantDType } from "../tensor/dtype.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { Tensor } from "../tensor/tensor.ts";
import { add } from "../ops/binary.ts";
import { dequantize } from "../ops/quantize.ts";
import { scaleShape } from "../tensor/quant_format.ts";

/** The method by which a paged K/V source hands attention its current view. */
export const PAGED_VIEW: unique symbol = Symbol("leanattn.pagedView");

/** A paged K/V source: a `PagedKV` or a `KVCache`. */
export interface PagedSource {
  /** @internal The current view; throws once the source was disposed. */
  [PAGED_VIEW](op: string): PagedView;
}

/** Paged K/V as one attention call sees them. */
export interface PagedView {
  readonly backend: Backend;
  /** K page buffers `[Pc, Hkv, pageSize, D]`, in page order. */
  readonly kPages: readonly Tensor[];
  /** V page buffers, laid out as `kPages`. */
  readonly vPages: readonly Tensor[];
  /** Quantized pages: per page buffer, float32 scales of its rows `[Pc, Hkv, pageSize, 1]`. */
  readonly kScalePages?: readonly Tensor[];
  /** Scales of the V rows, as `kScalePages`. */
  readonly vScalePages?: readonly Tensor[];
  readonly layout: PagedLayout;
  /** The block table `[B, maxBlocks]` on the device. */
  readonly blockTable: DataId;
  /** The same table on the host (−1 past each sequence's last used block). */
  readonly table: Int32Array;
  /** Valid tokens per sequence. */
  readonly kvLens: Int32Array;
  readonly B: number;
  readonly Hkv: number;
  readonly D: number;
  readonly dtype: DType;
}

/** Whether `x` is a paged K/V source (what `(q, kv, opts)` calls take as `kv`). */
export function isPagedSource(x: unknown): x is PagedSource {
  return typeof x === "object" && x !== null &&
    typeof (x as Partial<PagedSource>)[PAGED_VIEW] === "function";
}

/** The storage description of a tensor for a backend call. */
export const infoOf = (t: Tensor): TensorInfo => ({ id: t.id, shape: t.shape, dtype: t.dtype });

/** The backend's paged K/V description of a view (`AttentionInputs.pages`). */
export function pagesInfo(view: PagedView): PagedKVInfo {
  // Scale pages go to the backend as `[Pc, Hkv, pageSize]` (row r has scale element r).
  const scales = (t: Tensor): TensorInfo => ({ ...infoOf(t), shape: t.shape.slice(0, 3) });
  return {
    kPages: view.kPages.map(infoOf),
    vPages: view.vPages.map(infoOf),
    blockTable: view.blockTable,
    ...view.kScalePages && view.vScalePages && {
      kScalePages: view.kScalePages.map(scales),
      vScalePages: view.vScalePages.map(scales),
    },
  };
}

/** Paged K/V needs these three backend capabilities together. */
export type PagedBackend =
  & Backend
  & Required<
    Pick<Backend, "createIndexTable" | "gatherPageRows" | "scatterPageRows">
  >;

/** `backend` with the paged K/V capabilities, or an {@link ArgumentError} naming them. */
export function pagedBackend(op: string, backend: Backend): PagedBackend {
  const caps = ["createIndexTable", "gatherPageRows", "scatterPageRows"] as const;
  const missing = caps.filter((c) => typeof backend[c] !== "function");
  if (missing.length > 0) {
    throw new ArgumentError(
      `${op}: the ${JSON.stringify(backend.name)} backend has no paged K/V support (it lacks ` +
        `${missing.join(", ")}); use contiguous k, v tensors on it`,
    );
  }
  return backend as PagedBackend;
}

/** Page `page` as (page buffer, page within that buffer). */
export function bufferOf(
  layout: Pick<PagedLayout, "pagesPerBuffer">,
  page: number,
): [number, number] {
  const c = Math.floor(page / layout.pagesPerBuffer);
  return [c, page - c * layout.pagesPerBuffer];
}

/**
 * Per page buffer, the rows (`gatherPageRows`/`scatterPageRows` numbering: local page ·
 * pageSize + slot) of `n` token slots per sequence: slot `t` of sequence `b` is its token
 * `start[b] + t` when `t < count[b]`, else −1; −1 too where the token's page lies in another
 * buffer. A buffer no slot lands in gets null (nothing to do there).
 */
export function bufferRows(
  layout: PagedLayout,
  table: Int32Array,
  start: ArrayLike<number>,
  count: ArrayLike<number>,
  n: number,
): (Int32Array | null)[] {
  const { pageSize, maxBlocks } = layout;
  const B = start.length;
  const rows: (Int32Array | null)[] = Array(layout.buffers).fill(null);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < count[b]; t++) {
      const j = start[b] + t;
      const [c, local] = bufferOf(layout, table[b * maxBlocks + Math.floor(j / pageSize)]);
      rows[c] ??= new Int32Array(B * n).fill(-1);
      rows[c]![b * n + t] = local * pageSize + (j % pageSize);
    }
  }
  return rows;
}

/**
 * Gathers sequence tokens `[start[b], start[b] + count[b])` of `pages` into a contiguous
 * `[B, Hkv, n, D]` tensor (zeros past `count[b]`). With several page buffers each gives its
 * own rows and zeros elsewhere, and the pieces are added: `x + 0 = x` keeps every value.
 * Quantized pages (`scalePages` given, one scale per row) come back dequantized, float32.
 */
export function gatherRows(
  backend: PagedBackend,
  view: Pick<PagedView, "layout" | "table" | "Hkv" | "D" | "dtype">,
  pages: readonly Tensor[],
  start: ArrayLike<number>,
  count: ArrayLike<number>,
  n: number,
  scalePages?: readonly Tensor[],
): Tensor {
  const B = start.length;
  const shape = [B, view.Hkv, n, view.D];
  const rows = bufferRows(view.layout, view.table, start, count, n);
  let acc: Tensor | null = null;
  for (let c = 0; c < rows.length; c++) {
    if (!rows[c] && (acc || c < rows.length - 1)) continue;
    const r = rows[c] ?? new Int32Array(B * n).fill(-1);
    const id = backend.gatherPageRows(infoOf(pages[c]), r, B, n);
    let piece = new Tensor(backend, id, shape, view.dtype);
    if (scalePages) {
      const sid = backend.gatherPageRows(infoOf(scalePages[c]), r, B, n);
      const scale = new Tensor(backend, sid, [B, view.Hkv, n, 1], "float32");
      try {
        piece = dequantizeRows(piece, scale);
      } finally {
        scale.dispose();
      }
    }
    if (!acc) {
      acc = piece;
      continue;
    }
    const sum: Tensor = add(acc, piece);
    acc.dispose();
    piece.dispose();
    acc = sum;
  }
  return acc!;
}

/**
 * float32 `scale · data` of quantized rows `[B, H, n, D]` with one scale a row (`[B, H, n, 1]`;
 * rows of zeros have scale 0): `dequantize` over `[B, H·n, 1, D]`, where each block is one row
 * in either format. Disposes `data`.
 */
function dequantizeRows(data: Tensor, scale: Tensor): Tensor {
  const [B, H, n, D] = data.shape;
  const rows = [B, H * n, 1, D];
  const dtype = data.dtype as QuantDType;
  const d = data.reshape(rows);
  const s = scale.reshape(scaleShape(dtype, rows));
  try {
    const out = dequantize({ dtype, data: d, scale: s });
    try {
      return out.reshape([B, H, n, D]);
    } finally {
      out.dispose();
    }
  } finally {
    for (const t of [d, s, data]) t.dispose();
  }
}
