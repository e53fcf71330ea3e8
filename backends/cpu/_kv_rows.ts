/**
 * Where the CPU tile kernels find key `j` of one (sequence, kv head): the segment walk selects
 * the pair, and a kernel asks for runs of rows stored one after another — all of a tile's keys
 * at once for contiguous K/V `[B, Hkv, N, D]`, the keys within one page for paged K/V
 * (`PagedLayout`: key `j` of sequence `b` is row `j mod pageSize` of page
 * `blockTable[b · maxBlocks + ⌊j / pageSize⌋]`, page `p` in page buffer `⌊p / pagesPerBuffer⌋`).
 * Only addresses differ between the two, so the arithmetic (and the bits) are the same.
 *
 * @module
 */
import type { PagedLayout } from "../../schedule/attention_plan.ts";
import type { CpuArray, CpuQuantArray } from "./_storage.ts";
import type { KVQuant } from "./_kv_quant.ts";

/** Storage of K or V rows: float32, float16, or quantized (with {@link KVStorage.quant}). */
export type KVArray = CpuArray | CpuQuantArray;

/** The K/V storage of one call: the whole K/V, or the page buffers and their block table. */
export interface KVStorage {
  k: KVArray;
  v: KVArray;
  /** Paged K/V: the page buffers in page order and the block table `[B, maxBlocks]`. */
  pages?: { k: KVArray[]; v: KVArray[]; blockTable: Int32Array };
  /** Quantized K/V: the scales, per buffer of {@link kvArrays}. */
  quant?: KVQuant;
  /**
   * The shared WebAssembly memories behind the buffers of {@link kvArrays}, where storage
   * made them (`wasmMemoryOf`): tiles are copied out of those with `memory.copy`.
   */
  memories?: { k: (WebAssembly.Memory | undefined)[]; v: (WebAssembly.Memory | undefined)[] };
}

/** The K and V arrays a {@link KVRows}'s `buffer` indexes (one, or the page buffers). */
export function kvArrays(s: KVStorage): { k: readonly KVArray[]; v: readonly KVArray[] } {
  return s.pages ? { k: s.pages.k, v: s.pages.v } : { k: [s.k], v: [s.v] };
}

/**
 * The shape of the K/V the schedule walks, `[B, Hkv, N, D]`: k's own, or for pages (k is the
 * first page buffer `[Pc, Hkv, pageSize, D]`) the `maxBlocks · pageSize` keys a table reaches.
 */
export function walkedKvShape(
  qShape: readonly number[],
  kShape: readonly number[],
  paged: PagedLayout | undefined,
): readonly number[] {
  if (!paged) return kShape;
  return [qShape[0], kShape[1], paged.maxBlocks * paged.pageSize, kShape[3]];
}

/** Row addresses of one (sequence, kv head)'s keys; `locate` fills `buffer` and `at`. */
export interface KVRows {
  /** Page buffer (index into {@link kvArrays}) of the run `locate` found. */
  buffer: number;
  /** Element offset of that run's first row in its buffer. */
  at: number;
  /** Chooses sequence `b` and kv head `h` for the next `locate` calls. */
  select(b: number, h: number): void;
  /**
   * Finds key `j` (< the sequence's length) and returns how many of keys `[j, t1)` follow it
   * in consecutive rows (≥ 1); never reads a table entry past key `t1 − 1`.
   */
  locate(j: number, t1: number): number;
}

/** Row addresses over `[B, Hkv, N, D]` storage (N keys a (b, h)), or over pages. */
export function kvRows(
  s: KVStorage,
  Hkv: number,
  N: number,
  D: number,
  paged: PagedLayout | undefined,
): KVRows {
  if (!s.pages || !paged) {
    let base = 0;
    return {
      buffer: 0,
      at: 0,
      select(b, h) {
        base = (b * Hkv + h) * N * D;
      },
      locate(j, t1) {
        this.at = base + j * D;
        return t1 - j;
      },
    };
  }
  const { pageSize, maxBlocks, pagesPerBuffer } = paged;
  const table = s.pages.blockTable;
  let first = 0; // the selected sequence's first table entry
  let head = 0;
  return {
    buffer: 0,
    at: 0,
    select(b, h) {
      first = b * maxBlocks;
      head = h;
    },
    locate(j, t1) {
      const t = Math.floor(j / pageSize);
      const page = table[first + t];
      const c = Math.floor(page / pagesPerBuffer);
      const slot = j - t * pageSize;
      this.buffer = c;
      this.at = (((page - c * pagesPerBuffer) * Hkv + head) * pageSize + slot) * D;
      return Math.min(t1 - j, pageSize - slot);
    },
  };
}
