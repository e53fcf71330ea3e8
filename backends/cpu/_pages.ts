/**
 * Paged K/V primitives of the CPU backend (`Backend.createIndexTable`, `gatherPageRows`,
 * `scatterPageRows`): block tables as int32 arrays, and page rows copied element for element
 * in the pages' storage dtype (so float16, int8 and float8e4m3 codes move without rounding).
 *
 * @module
 */
import type { TensorInfo } from "../backend.ts";
import { isQuantDType } from "../../tensor/dtype.ts";
import {
  allocCpu,
  allocCpuQuant,
  type CpuArray,
  type CpuData,
  type CpuQuantArray,
} from "./_storage.ts";

/** Storage of an int32 index table (a block table), shared with the worker threads. */
export function indexTable(values: Int32Array): Int32Array {
  const t = new Int32Array(new SharedArrayBuffer(Math.max(4, values.length * 4)), 0, values.length);
  t.set(values);
  return t;
}

/** The array behind a CPU tensor of any storage dtype. */
function raw(x: TensorInfo): CpuArray | CpuQuantArray {
  return (x.id as CpuData).values as CpuArray | CpuQuantArray;
}

/**
 * Calls `fn(pageElem, rowElem)` for each row `(b, h, t)` of `[B, H, n, D]` whose entry in
 * `rows` is not negative: the element offsets of its page row in `pages` `[P, H, pageSize, D]`
 * and of the row itself.
 */
function eachRow(
  pagesShape: readonly number[],
  rows: Int32Array,
  B: number,
  n: number,
  fn: (pageElem: number, rowElem: number) => void,
): void {
  const [, H, pageSize, D] = pagesShape;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < n; t++) {
      const r = rows[b * n + t];
      if (r < 0) continue;
      const page = Math.floor(r / pageSize);
      for (let h = 0; h < H; h++) {
        fn(((page * H + h) * pageSize + (r % pageSize)) * D, ((b * H + h) * n + t) * D);
      }
    }
  }
}

/** `Backend.gatherPageRows` on the CPU: a new `[B, H, n, D]` array of the pages' dtype. */
export function gatherPageRows(
  pages: TensorInfo,
  rows: Int32Array,
  B: number,
  n: number,
): CpuArray | CpuQuantArray {
  const [, H, , D] = pages.shape;
  const size = B * H * n * D;
  // Fresh storage is zeroed: rows < 0 stay 0 (an int8 0 and the E4M3 code of +0 too).
  const out = isQuantDType(pages.dtype)
    ? allocCpuQuant(size, pages.dtype)
    : allocCpu(size, pages.dtype);
  const src = raw(pages);
  eachRow(pages.shape, rows, B, n, (p, r) => out.set(src.subarray(p, p + D), r));
  return out;
}

/** `Backend.scatterPageRows` on the CPU: writes `src`'s rows into `pages`' array in place. */
export function scatterPageRows(pages: TensorInfo, src: TensorInfo, rows: Int32Array): void {
  const [B, , n, D] = src.shape;
  const dst = raw(pages);
  const from = raw(src);
  eachRow(pages.shape, rows, B, n, (p, r) => dst.set(from.subarray(r, r + D), p));
}
