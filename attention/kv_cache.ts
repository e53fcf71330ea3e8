/**
 * `kvCache`: a paged KV cache that grows in place. All pages are allocated when the cache is
 * made (device memory stays flat however sequences grow and end); appends take pages from a
 * host free list and write the new tokens straight into them on the device, so existing
 * tokens never move and nothing is read back. Sequences may share prefix pages (`fork`),
 * copied on write at the one partly filled page. Attention reads the cache as `(q, cache,
 * opts)`.
 *
 * @module
 */
import type { Backend, DataId } from "../backends/backend.ts";
import { computeBackend } from "../backends/backend.ts";
import type { PagedLayout } from "../schedule/attention_plan.ts";
import { checkDType, type DType, isQuantDType, type QuantDType } from "../tensor/dtype.ts";
import { defaultTensorBackend } from "../tensor/default_backend.ts";
import { ArgumentError, DisposedTensorError, LimitError, show } from "../tensor/errors.ts";
import { readOptions } from "../tensor/options.ts";
import { zeros } from "../tensor/creation.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { TensorBackend } from "../tensor/storage.ts";
import { positiveIntOption } from "./_validate.ts";
import { PAGED_VIEW, type PagedBackend, pagedBackend, type PagedView } from "./_paged_view.ts";
import { checkAppend, copyPage, quantizeTokens, writeTokens } from "./_kv_cache_write.ts";

/** Options of {@link kvCache}. */
export interface KVCacheOptions {
  /** Sequences (B). */
  batch: number;
  /** K/V heads (Hkv). */
  kvHeads: number;
  /** Head dimension (D). */
  headDim: number;
  /** Tokens per page (default 16). */
  pageSize?: number;
  /** Tokens the cache holds over all sequences (rounded up to whole pages). */
  capacity: number;
  /**
   * Storage dtype (default float32). `"int8"` or `"float8e4m3"`: appended float32/float16
   * tokens are quantized on the device with one float32 scale per (token, kv head) for both
   * formats (a cache cannot know the maxima of tokens to come, so unlike `quantize`'s
   * per-head float8e4m3 scales these are per token), kept in scale pages beside the pages.
   */
  dtype?: DType;
  /** Where the pages live (default: the default backend). */
  backend?: TensorBackend;
  /**
   * At most this many pages per page buffer (default: as many as one device buffer binding
   * holds, `backend.partBytes`; all pages in one buffer where there is no such limit).
   */
  pagesPerBuffer?: number;
}

/** Options of {@link KVCache.append}. */
export interface AppendOptions {
  /** New tokens per sequence: sequence b takes the first `lens[b]` of the S given (default S). */
  lens?: readonly number[];
}

const OP = "kvCache";
const NAMES = [
  "batch",
  "kvHeads",
  "headDim",
  "pageSize",
  "capacity",
  "dtype",
  "backend",
  "pagesPerBuffer",
] as const;

/** A paged KV cache (see {@link kvCache}). */
export class KVCache {
  /** Sequences (B). */
  readonly batch: number;
  /** K/V heads. */
  readonly kvHeads: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Tokens per page. */
  readonly pageSize: number;
  /** Storage dtype. */
  readonly dtype: DType;
  /** Pages in all. */
  readonly pages: number;
  /** Pages per page buffer (every buffer but the last). */
  readonly pagesPerBuffer: number;
  readonly #backend: PagedBackend;
  #k: Tensor[];
  #v: Tensor[];
  /** Quantized cache: float32 scale pages `[Pc, Hkv, pageSize, 1]` beside #k and #v. */
  #ks: Tensor[] = [];
  #vs: Tensor[] = [];
  readonly #lens: Int32Array;
  /** Page ids of each sequence, in token order. */
  readonly #blocks: number[][];
  /** Sequences holding each page (a forked prefix page is held by several). */
  readonly #refs: Int32Array;
  /** Free page ids; the next page taken is the last. */
  readonly #free: number[];
  #device: DataId | null = null;
  #view: PagedView | null = null;
  #disposed = false;

  /** @internal Use {@link kvCache}. */
  constructor(
    backend: PagedBackend,
    dims: { batch: number; kvHeads: number; headDim: number; pageSize: number; dtype: DType },
    pages: number,
    pagesPerBuffer: number,
  ) {
    this.#backend = backend;
    ({
      batch: this.batch,
      kvHeads: this.kvHeads,
      headDim: this.headDim,
      pageSize: this.pageSize,
      dtype: this.dtype,
    } = dims);
    this.pages = pages;
    this.pagesPerBuffer = pagesPerBuffer;
    this.#lens = new Int32Array(this.batch);
    this.#blocks = Array.from({ length: this.batch }, () => []);
    this.#refs = new Int32Array(pages);
    this.#free = Array.from({ length: pages }, (_, i) => pages - 1 - i);
    this.#k = [];
    this.#v = [];
    try {
      for (let p0 = 0; p0 < pages; p0 += pagesPerBuffer) {
        const shape = [
          Math.min(pagesPerBuffer, pages - p0),
          this.kvHeads,
          this.pageSize,
          this.headDim,
        ];
        this.#k.push(pageBuffer(backend, shape, this.dtype));
        this.#v.push(pageBuffer(backend, shape, this.dtype));
        if (isQuantDType(this.dtype)) {
          const rows = [shape[0], shape[1], shape[2], 1];
          this.#ks.push(pageBuffer(backend, rows, "float32"));
          this.#vs.push(pageBuffer(backend, rows, "float32"));
        }
      }
    } catch (e) {
      for (const t of this.#buffers()) t.dispose();
      throw e;
    }
  }

  /** Tokens the cache holds in all (its pages × pageSize). */
  get capacity(): number {
    return this.pages * this.pageSize;
  }

  /** Tokens stored per sequence. */
  get lens(): readonly number[] {
    return Object.freeze(Array.from(this.#lens));
  }

  /** Pages no sequence holds. */
  get freePages(): number {
    return this.#free.length;
  }

  /** Whether {@link KVCache.dispose} was called. */
  get isDisposed(): boolean {
    return this.#disposed;
  }

  /**
   * Appends tokens: k, v `[B, Hkv, S, D]` of the cache's dtype (a quantized cache: float32 or
   * float16, quantized here on the device) and backend; sequence b takes
   * the first `lens[b]` (default S). Writes into free pages on the device; nothing already
   * stored moves. Throws `LimitError` naming the capacity when the free pages do not suffice,
   * and leaves the cache unchanged on any error.
   */
  append(k: Tensor, v: Tensor, options?: AppendOptions): void {
    const op = "kvCache.append";
    this.#live(op);
    const o = readOptions<AppendOptions>(op, options, ["lens"]);
    const { S, take } = checkAppend(op, this, this.#backend, k, v, o.lens);
    // Pages needed: new blocks, plus a copy of a shared, partly filled last page.
    const shared: number[] = [];
    let need = 0;
    for (let b = 0; b < this.batch; b++) {
      if (take[b] === 0) continue;
      const len = this.#lens[b];
      need += Math.ceil((len + take[b]) / this.pageSize) - this.#blocks[b].length;
      const last = this.#blocks[b].at(-1);
      if (len % this.pageSize !== 0 && last !== undefined && this.#refs[last] > 1) {
        shared.push(b);
        need++;
      }
    }
    if (need > this.#free.length) {
      const tokens = take.reduce((a, n) => a + n, 0);
      throw new LimitError(
        `${op}: out of capacity: ${tokens} new tokens need ${need} more pages of ` +
          `${this.pageSize} tokens, but only ${this.#free.length} of the cache's ${this.pages} ` +
          `pages are free (capacity ${this.capacity} tokens); free() finished sequences or make ` +
          `the cache with a larger capacity. The cache is unchanged`,
      );
    }
    // Quantized: the tokens are quantized first, so a failure there leaves the cache as it was.
    const kq = isQuantDType(this.dtype) ? quantizeTokens(this.#backend, k, this.dtype) : null;
    let vq;
    try {
      vq = kq && quantizeTokens(this.#backend, v, this.dtype as QuantDType);
    } catch (e) {
      kq?.data.dispose();
      kq?.scale.dispose();
      throw e;
    }
    try {
      this.#write(k, v, kq, vq ?? null, take, shared, S);
    } finally {
      for (const t of [kq?.data, kq?.scale, vq?.data, vq?.scale]) t?.dispose();
    }
  }

  /** The device writes of an append (after its checks): copy on write, new pages, tokens. */
  #write(
    k: Tensor,
    v: Tensor,
    kq: { data: Tensor; scale: Tensor } | null,
    vq: { data: Tensor; scale: Tensor } | null,
    take: Int32Array,
    shared: number[],
    S: number,
  ): void {
    for (const b of shared) {
      const old = this.#blocks[b].at(-1)!;
      const page = this.#take();
      const n = this.#lens[b] % this.pageSize;
      for (const pages of [this.#k, this.#v, this.#ks, this.#vs]) {
        if (pages.length > 0) copyPage(this.#backend, this.#layoutNow(), pages, old, page, n);
      }
      this.#refs[old]--;
      this.#blocks[b][this.#blocks[b].length - 1] = page;
    }
    const start = Int32Array.from(this.#lens);
    for (let b = 0; b < this.batch; b++) {
      const blocks = Math.ceil((start[b] + take[b]) / this.pageSize);
      while (this.#blocks[b].length < blocks) this.#blocks[b].push(this.#take());
    }
    const [table, maxBlocks] = this.#table();
    const layout = { ...this.#layoutNow(), maxBlocks };
    const write = (pages: Tensor[], src: Tensor) =>
      writeTokens(this.#backend, layout, table, pages, src, start, take, S);
    write(this.#k, kq ? kq.data : k);
    write(this.#v, vq ? vq.data : v);
    if (kq && vq) {
      write(this.#ks, kq.scale);
      write(this.#vs, vq.scale);
    }
    for (let b = 0; b < this.batch; b++) this.#lens[b] += take[b];
    this.#changed();
  }

  /** Ends sequence b: its length becomes 0 and the pages no other sequence holds are free. */
  free(b: number): void {
    this.#live("kvCache.free");
    this.#seq("kvCache.free", "b", b);
    for (const p of this.#blocks[b]) if (--this.#refs[p] === 0) this.#free.push(p);
    this.#blocks[b] = [];
    this.#lens[b] = 0;
    this.#changed();
  }

  /**
   * Sequence `to` (empty: `free(to)` first) becomes a copy of sequence `from` that shares its
   * pages: no device memory is used until one of them appends, and then only the partly
   * filled last page is copied (copy on write). The two then diverge.
   */
  fork(from: number, to: number): void {
    const op = "kvCache.fork";
    this.#live(op);
    this.#seq(op, "from", from);
    this.#seq(op, "to", to);
    if (from === to) throw new ArgumentError(`${op}: from and to must differ, got ${from} twice`);
    if (this.#lens[to] !== 0) {
      throw new ArgumentError(
        `${op}: sequence ${to} holds ${this.#lens[to]} tokens; free(${to}) before forking into it`,
      );
    }
    this.#blocks[to] = [...this.#blocks[from]];
    for (const p of this.#blocks[to]) this.#refs[p]++;
    this.#lens[to] = this.#lens[from];
    this.#changed();
  }

  /** Frees the pages and the block table. Safe to call twice. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const t of this.#buffers()) t.dispose();
    this.#k = [];
    this.#v = [];
    this.#ks = [];
    this.#vs = [];
    this.#changed();
  }

  /** @internal The current view (the device block table is made on first use after a change). */
  [PAGED_VIEW](op: string): PagedView {
    this.#live(op);
    if (this.#view) return this.#view;
    const [table, maxBlocks] = this.#table();
    this.#device = this.#backend.createIndexTable(table);
    this.#view = {
      backend: this.#backend,
      kPages: this.#k,
      vPages: this.#v,
      ...this.#ks.length > 0 && { kScalePages: this.#ks, vScalePages: this.#vs },
      layout: Object.freeze({ ...this.#layoutNow(), maxBlocks }),
      blockTable: this.#device,
      table,
      kvLens: Int32Array.from(this.#lens),
      B: this.batch,
      Hkv: this.kvHeads,
      D: this.headDim,
      dtype: this.dtype,
    };
    return this.#view;
  }

  /** Every page buffer: data, and a quantized cache's scales. */
  #buffers(): Tensor[] {
    return [...this.#k, ...this.#v, ...this.#ks, ...this.#vs];
  }

  #live(op: string): void {
    if (this.#disposed) {
      throw new DisposedTensorError(`${op}: the KVCache was used after dispose()`);
    }
  }

  #seq(op: string, name: string, b: unknown): void {
    if (typeof b !== "number" || !Number.isSafeInteger(b) || b < 0 || b >= this.batch) {
      throw new ArgumentError(
        `${op}: ${name} must be a sequence index in [0, ${this.batch}), got ${show(b)}`,
      );
    }
  }

  #take(): number {
    const p = this.#free.pop()!;
    this.#refs[p] = 1;
    return p;
  }

  /** Layout without the block-table width (that follows the longest sequence). */
  #layoutNow(): Omit<PagedLayout, "maxBlocks"> {
    return {
      pageSize: this.pageSize,
      pagesPerBuffer: this.pagesPerBuffer,
      buffers: this.#k.length,
      pages: this.pages,
    };
  }

  /** The host block table `[B, maxBlocks]` (−1 past each sequence's pages) and maxBlocks. */
  #table(): [Int32Array, number] {
    const maxBlocks = Math.max(1, ...this.#blocks.map((r) => r.length));
    const table = new Int32Array(this.batch * maxBlocks).fill(-1);
    this.#blocks.forEach((r, b) => table.set(r, b * maxBlocks));
    return [table, maxBlocks];
  }

  /** The stored tokens changed: the next attention call makes a new device block table. */
  #changed(): void {
    if (this.#device) this.#backend.release(this.#device);
    this.#device = null;
    this.#view = null;
  }
}

/**
 * A paged KV cache of `capacity` tokens over `batch` sequences, all of its pages allocated
 * now on `backend` (in page buffers that each fit one device buffer binding).
 *
 * @example
 * ```ts
 * import { kvCache, leanAttention, randn } from "../mod.ts";
 * const cache = kvCache({ batch: 2, kvHeads: 2, headDim: 8, pageSize: 4, capacity: 64 });
 * cache.append(randn([2, 2, 5, 8], { seed: 1 }), randn([2, 2, 5, 8], { seed: 2 }), {
 *   lens: [5, 3],
 * });
 * const out = leanAttention(randn([2, 4, 1, 8], { seed: 3 }), cache);
 * console.log(cache.lens, out.shape); // [5, 3] [2, 4, 1, 8]
 * cache.dispose();
 * ```
 */
export function kvCache(options: KVCacheOptions): KVCache {
  const o = readOptions<KVCacheOptions>(OP, options, NAMES);
  const dim = (name: "batch" | "kvHeads" | "headDim" | "capacity"): number => {
    const v = positiveIntOption(OP, name, o[name], 2 ** 31 - 1);
    if (v === undefined) throw new ArgumentError(`${OP}: ${name} is required`);
    return v;
  };
  const batch = dim("batch");
  const kvHeads = dim("kvHeads");
  const headDim = dim("headDim");
  const capacity = dim("capacity");
  const pageSize = positiveIntOption(OP, "pageSize", o.pageSize, 2 ** 20) ?? 16;
  const dtype = checkDType(o.dtype ?? "float32", `${OP}: dtype`);
  const backend = pagedBackend(OP, computeBackend(OP, o.backend ?? defaultTensorBackend()));
  const pages = Math.ceil(capacity / pageSize);
  // A float16 tensor is stored as halves only where the backend has them natively.
  const elem = isQuantDType(dtype) ? 1 : dtype === "float16" && backend.nativeF16 ? 2 : 4;
  // A quantized page has a float32 scale page beside it; both must fit a binding.
  const scaleBytes = isQuantDType(dtype) ? kvHeads * pageSize * 4 : 0;
  const pageBytes = Math.max(kvHeads * pageSize * headDim * elem, scaleBytes);
  const bind = backend.partBytes ?? Infinity;
  if (pageBytes > bind) {
    throw new LimitError(
      `${OP}: one page [${kvHeads}, ${pageSize}, ${headDim}] of ${dtype} is ${pageBytes} ` +
        `bytes, over the ${bind} bytes one device buffer binding holds; use a smaller pageSize`,
    );
  }
  const cap = positiveIntOption(OP, "pagesPerBuffer", o.pagesPerBuffer) ?? Infinity;
  const perBuffer = Math.min(pages, cap, Math.floor(bind / pageBytes));
  return new KVCache(backend, { batch, kvHeads, headDim, pageSize, dtype }, pages, perBuffer);
}

/**
 * A page buffer: storage whose values are never read before an append writes them, so no
 * host array of its size is made where the backend can allocate without one (a multi-GiB
 * cache on WebGPU); zeros elsewhere.
 */
function pageBuffer(backend: Backend, shape: number[], dtype: DType): Tensor {
  if (backend.allocUninitialized) {
    return new Tensor(backend, backend.allocUninitialized(shape, dtype), shape, dtype);
  }
  return zeros(shape, { dtype, backend });
}
