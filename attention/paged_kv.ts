/**
 * `pagedKV`: a view of K/V pages the caller owns, through a block table (VARIANTS.md, "Paged
 * KV"), for `naiveAttention`, `flashAttention` and `leanAttention` as `(q, kv, opts)`.
 *
 * @module
 */
import type { DataId } from "../backends/backend.ts";
import type { PagedLayout } from "../schedule/attention_plan.ts";
import type { DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  LimitError,
  ShapeError,
  show,
} from "../tensor/errors.ts";
import { readOptions } from "../tensor/options.ts";
import { fmt } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { describe, live } from "../ops/_util.ts";
import { computeBackend } from "../backends/backend.ts";
import {
  infoOf,
  PAGED_VIEW,
  type PagedBackend,
  pagedBackend,
  type PagedView,
} from "./_paged_view.ts";

/** Options of {@link pagedKV}. */
export interface PagedKVOptions {
  /**
   * K pages `[P, Hkv, pageSize, D]`, or page buffers: an array of such tensors that together
   * hold pages `0..P−1` in order, every buffer but the last with the same page count.
   */
  kPages: Tensor | readonly Tensor[];
  /** V pages, laid out as `kPages`. */
  vPages: Tensor | readonly Tensor[];
  /**
   * Page ids per sequence: `blockTable[b][t]` holds tokens `[t·pageSize, (t+1)·pageSize)` of
   * sequence b. Or a row-major int32 table `[B, maxBlocks]` with `blockTableShape`.
   */
  blockTable: readonly (readonly number[])[] | Int32Array;
  /** `[B, maxBlocks]` of an `Int32Array` block table. */
  blockTableShape?: readonly [number, number];
  /** Valid tokens per sequence (≤ its blocks × pageSize). */
  kvLens: readonly number[];
}

const OP = "pagedKV";
const NAMES = ["kPages", "vPages", "blockTable", "blockTableShape", "kvLens"] as const;

/**
 * K/V pages seen through a block table. It owns only its device block table (freed by
 * {@link PagedKV.dispose}); the page tensors stay the caller's and must outlive its use.
 */
export class PagedKV {
  /** Page layout (page size, block-table width, page buffers). */
  readonly layout: PagedLayout;
  /** Valid tokens per sequence. */
  readonly kvLens: readonly number[];
  /** K page buffers. */
  readonly kPages: readonly Tensor[];
  /** V page buffers. */
  readonly vPages: readonly Tensor[];
  readonly #backend: PagedBackend;
  readonly #table: Int32Array;
  readonly #lens: Int32Array;
  #device: DataId | null;

  /** @internal Use {@link pagedKV}. */
  constructor(
    backend: PagedBackend,
    kPages: Tensor[],
    vPages: Tensor[],
    layout: PagedLayout,
    table: Int32Array,
    lens: Int32Array,
  ) {
    this.#backend = backend;
    this.kPages = Object.freeze(kPages);
    this.vPages = Object.freeze(vPages);
    this.layout = Object.freeze({ ...layout });
    this.#table = table;
    this.#lens = lens;
    this.kvLens = Object.freeze(Array.from(lens));
    this.#device = backend.createIndexTable(table);
  }

  /** Sequences (the batch size B). */
  get batch(): number {
    return this.#lens.length;
  }

  /** Whether {@link PagedKV.dispose} was called. */
  get isDisposed(): boolean {
    return this.#device === null;
  }

  /** Frees the device block table (the pages stay the caller's). Safe to call twice. */
  dispose(): void {
    if (this.#device) this.#backend.release(this.#device);
    this.#device = null;
  }

  /** @internal */
  [PAGED_VIEW](op: string): PagedView {
    if (!this.#device) throw new DisposedTensorError(`${op}: the PagedKV was used after dispose()`);
    this.kPages.forEach((t, i) => live(op, `kPages[${i}]`, t));
    this.vPages.forEach((t, i) => live(op, `vPages[${i}]`, t));
    const [, Hkv, , D] = this.kPages[0].shape;
    return {
      backend: this.#backend,
      kPages: this.kPages,
      vPages: this.vPages,
      layout: this.layout,
      blockTable: this.#device,
      table: this.#table,
      kvLens: this.#lens,
      B: this.#lens.length,
      Hkv,
      D,
      dtype: this.kPages[0].dtype,
    };
  }
}

/**
 * A paged view of K/V for attention: pages `[P, Hkv, pageSize, D]` in any order (sequences
 * may share pages, e.g. a prompt prefix), one row of page ids per sequence and its length.
 * Everything is checked here; attention then reads only the pages the lengths use.
 *
 * @example
 * ```ts
 * import { flashAttention, pagedKV, randn } from "../mod.ts";
 * const kPages = randn([6, 2, 4, 8], { seed: 1 });
 * const vPages = randn([6, 2, 4, 8], { seed: 2 });
 * const kv = pagedKV({ kPages, vPages, blockTable: [[5, 0, 3], [2]], kvLens: [10, 4] });
 * const out = flashAttention(randn([2, 4, 1, 8], { seed: 3 }), kv);
 * console.log(out.shape); // [2, 4, 1, 8]
 * kv.dispose();
 * ```
 */
export function pagedKV(options: PagedKVOptions): PagedKV {
  const o = readOptions<PagedKVOptions>(OP, options, NAMES);
  for (const name of ["kPages", "vPages", "blockTable", "kvLens"] as const) {
    if (o[name] === undefined) throw new ArgumentError(`${OP}: ${name} is required`);
  }
  const k = pageBuffers("kPages", o.kPages);
  const v = pageBuffers("vPages", o.vPages);
  const backend = pagedBackend(OP, computeBackend(OP, k[0].backend));
  const [, Hkv, pageSize, D] = k[0].shape;
  const dtype: DType = k[0].dtype;
  const pagesPerBuffer = k[0].shape[0];
  let P = 0;
  for (const [name, list] of [["kPages", k], ["vPages", v]] as const) {
    if (list.length !== k.length) {
      throw new ShapeError(
        `${OP}: kPages and vPages must have as many page buffers, got ${k.length} and ${v.length}`,
      );
    }
    let pages = 0;
    list.forEach((t, c) => {
      const s = t.shape;
      const last = c === list.length - 1;
      if (s[1] !== Hkv || s[2] !== pageSize || s[3] !== D || (!last && s[0] !== pagesPerBuffer)) {
        throw new ShapeError(
          `${OP}: ${name}[${c}] must be [${last ? "Pc" : pagesPerBuffer}, ${Hkv}, ${pageSize}, ` +
            `${D}] like kPages[0] (every page buffer but the last with as many pages), got ` +
            `${fmt(s)}`,
        );
      }
      if (name === "vPages" && s[0] !== k[c].shape[0]) {
        throw new ShapeError(`${OP}: vPages[${c}] ${fmt(s)} differs from kPages[${c}]`);
      }
      if (t.backend !== k[0].backend) {
        throw new BackendMismatchError(
          `${OP}: page buffers must be on one backend, got ${k[0].backend.name} and ` +
            `${t.backend.name} (${name}[${c}])`,
        );
      }
      if (t.dtype !== dtype) {
        throw new DTypeError(
          `${OP}: page buffers must have one dtype, got ${dtype} and ${t.dtype} (${name}[${c}])`,
        );
      }
      pages += s[0];
    });
    P = pages;
  }
  const lens = lengths(o.kvLens);
  const B = lens.length;
  const [table, maxBlocks] = blockTable(o.blockTable, o.blockTableShape, B);
  checkTable(table, maxBlocks, lens, pageSize, P);
  const layout = { pageSize, maxBlocks, pagesPerBuffer, buffers: k.length, pages: P };
  return new PagedKV(backend, k, v, layout, table, lens);
}

/** Page buffers as a list, each a live rank-4 tensor stored whole. */
function pageBuffers(name: string, x: unknown): Tensor[] {
  const list = Array.isArray(x) ? [...x] : [x];
  if (list.length === 0) throw new ArgumentError(`${OP}: ${name} must hold at least one buffer`);
  list.forEach((t, c) => {
    const label = Array.isArray(x) ? `${name}[${c}]` : name;
    live(OP, label, t);
    const tt = t as Tensor;
    if (tt.shape.length !== 4 || tt.shape.some((d) => d < 1)) {
      throw new ShapeError(`${OP}: ${label} must be [P, Hkv, pageSize, D], got ${fmt(tt.shape)}`);
    }
    const b = computeBackend(OP, tt.backend);
    if (b.storageParts?.(infoOf(tt))) {
      throw new LimitError(
        `${OP}: ${label} ${fmt(tt.shape)} is larger than one device buffer binding (the ` +
          `backend stored it across buffers); pass the pages as an array of page buffers, each ` +
          `within the binding, or let kvCache() allocate them`,
      );
    }
  });
  return list as Tensor[];
}

/** `kvLens` as int32, each a non-negative integer. */
function lengths(x: unknown): Int32Array {
  if (!Array.isArray(x) || x.length === 0) {
    throw new ArgumentError(`${OP}: kvLens must be a non-empty array of lengths, got ${show(x)}`);
  }
  return Int32Array.from(x, (n, b) => {
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0 || n > 2 ** 31 - 1) {
      throw new ArgumentError(`${OP}: kvLens[${b}] must be an integer ≥ 0, got ${show(n)}`);
    }
    return n;
  });
}

/** The block table as int32 `[B, maxBlocks]` (short rows padded with −1) and maxBlocks. */
function blockTable(x: unknown, shape: unknown, B: number): [Int32Array, number] {
  if (x instanceof Int32Array) {
    const ok = Array.isArray(shape) && shape.length === 2 &&
      shape.every((d) => Number.isSafeInteger(d) && d >= 1);
    if (!ok) {
      throw new ArgumentError(
        `${OP}: an Int32Array blockTable needs blockTableShape [B, maxBlocks], got ${show(shape)}`,
      );
    }
    const [rows, cols] = shape as number[];
    if (rows !== B || rows * cols !== x.length) {
      throw new ShapeError(
        `${OP}: blockTable of ${x.length} entries with blockTableShape [${rows}, ${cols}] and ` +
          `${B} kvLens: expected [B = ${B}, maxBlocks] holding B · maxBlocks entries`,
      );
    }
    return [Int32Array.from(x), cols];
  }
  if (shape !== undefined) {
    throw new ArgumentError(`${OP}: blockTableShape goes only with an Int32Array blockTable`);
  }
  if (!Array.isArray(x) || x.length !== B || !x.every((r) => Array.isArray(r))) {
    throw new ArgumentError(
      `${OP}: blockTable must be an array of ${B} arrays of page ids (one per kvLens entry), ` +
        `got ${describe(x)}`,
    );
  }
  const cols = Math.max(1, ...x.map((r: unknown[]) => r.length));
  const out = new Int32Array(B * cols).fill(-1);
  x.forEach((r: unknown[], b) =>
    r.forEach((p, t) => {
      if (typeof p !== "number" || !Number.isSafeInteger(p)) {
        throw new ArgumentError(`${OP}: blockTable[${b}][${t}] must be a page id, got ${show(p)}`);
      }
      out[b * cols + t] = p;
    })
  );
  return [out, cols];
}

/**
 * Every block a length uses names a page in `[0, P)`; lengths fit their rows. Entries past a
 * sequence's last used block are never read: they are set to −1 so no kernel could follow them.
 */
function checkTable(
  table: Int32Array,
  maxBlocks: number,
  lens: Int32Array,
  pageSize: number,
  P: number,
): void {
  lens.forEach((len, b) => {
    const blocks = Math.ceil(len / pageSize);
    if (blocks > maxBlocks) {
      throw new ShapeError(
        `${OP}: kvLens[${b}] = ${len} needs ${blocks} blocks of ${pageSize} tokens, but the ` +
          `block table has ${maxBlocks} per sequence`,
      );
    }
    for (let t = 0; t < maxBlocks; t++) {
      const p = table[b * maxBlocks + t];
      if (t >= blocks) {
        table[b * maxBlocks + t] = -1;
      } else if (!(p >= 0 && p < P)) {
        throw new ArgumentError(
          `${OP}: blockTable[${b}][${t}] = ${p} is not a page id in [0, ${P}) (tokens ` +
            `${t * pageSize}.. of sequence ${b}, whose length is ${len})`,
        );
      }
    }
  });
}
