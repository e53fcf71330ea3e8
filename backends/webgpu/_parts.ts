/**
 * Tensors too large for one storage binding, stored as several buffers.
 *
 * WebGPU caps one binding (`maxStorageBufferBindingSize`, 2 GiB on an H200, 128 MiB by
 * default) below one buffer (`maxBufferSize`, ≈4 GiB / 256 MiB), and a kernel can only read
 * what one binding shows. K for B=1, H=32, N=512k, D=128 in float16 is 4 GiB. So a tensor of
 * rank ≥ 2 over the part size is cut along its second-to-last axis: for K/V `[B, Hkv, N, D]`
 * part c holds `[:, :, n0:n1, :]`, itself an ordinary row-major `[B, Hkv, n1 − n0, D]` buffer,
 * so the attention kernel runs on each part unchanged and the parts' states are merged
 * (attention/_run.ts). Any other op refuses a tensor in parts with a {@link LimitError}.
 *
 * This file is the pure part: where the cuts go, and how host arrays are cut and reassembled.
 *
 * @module
 */
import { LimitError } from "../../tensor/errors.ts";
import { fmt, type Shape } from "../../tensor/shape.ts";

/** Rows of the parts' axis a part holds, when a part fits that many: a multiple of any tile. */
export const PART_ALIGN = 256;

/** How a tensor is cut: `outer × rows × row` elements, parts over `[n0, n1)` of `rows`. */
export interface PartLayout {
  /** Product of the dims before the parts' axis. */
  outer: number;
  /** Length of the parts' (second-to-last) axis. */
  rows: number;
  /** Elements of one row (the last dim). */
  row: number;
  /** `[n0, n1)` ranges of the parts' axis, in order, covering `[0, rows)`. */
  ranges: [number, number][];
}

/**
 * The cut of a tensor of `shape` whose elements take `bytesPer` bytes each, so that no part
 * exceeds `maxBytes`; null when it fits whole. Throws {@link LimitError} (naming `limitName`)
 * when no cut along the second-to-last axis can make the parts fit.
 */
export function partLayout(
  shape: Shape,
  bytesPer: number,
  maxBytes: number,
  limitName: string,
): PartLayout | null {
  const elements = shape.reduce((a, b) => a * b, 1);
  const bytes = elements * bytesPer;
  if (bytes <= maxBytes) return null;
  if (shape.length < 2) {
    throw new LimitError(
      `webgpu: a tensor of shape ${fmt(shape)} needs ${bytes} bytes, more than ${limitName} ` +
        `${maxBytes}; only tensors of rank ≥ 2 can be stored in parts across buffers (along the ` +
        `second-to-last axis)`,
    );
  }
  const rows = shape[shape.length - 2];
  const row = shape[shape.length - 1];
  const outer = elements / (rows * row);
  const slab = outer * row * bytesPer; // bytes of one index of the parts' axis
  const maxRows = Math.floor(maxBytes / slab);
  if (maxRows < 1) {
    throw new LimitError(
      `webgpu: a tensor of shape ${fmt(shape)} needs ${bytes} bytes, more than ${limitName} ` +
        `${maxBytes}, and one index of its second-to-last axis alone takes ${slab} bytes, so ` +
        `no cut into parts fits`,
    );
  }
  const align = maxRows >= PART_ALIGN ? PART_ALIGN : 1;
  const cap = Math.floor(maxRows / align) * align;
  const count = Math.ceil(rows / cap);
  // Equal parts (the last may be short), each a multiple of `align` rows.
  const per = Math.ceil(Math.ceil(rows / count) / align) * align;
  const ranges: [number, number][] = [];
  for (let n0 = 0; n0 < rows; n0 += per) ranges.push([n0, Math.min(rows, n0 + per)]);
  return { outer, rows, row, ranges };
}

/** The elements of part `[n0, n1)` of `src` (laid out `outer × rows × row`), contiguous. */
export function cutPart<T extends Float32Array | Float16Array | Int8Array | Uint8Array>(
  src: T,
  layout: PartLayout,
  n0: number,
  n1: number,
): T {
  const { outer, rows, row } = layout;
  const len = (n1 - n0) * row;
  const dst = new (src.constructor as new (n: number) => T)(outer * len);
  for (let o = 0; o < outer; o++) {
    const from = (o * rows + n0) * row;
    dst.set(src.subarray(from, from + len), o * len);
  }
  return dst;
}

/** Writes part `[n0, n1)` (contiguous, float32 or float16) into its place in `dst`. */
export function placePart(
  dst: Float32Array,
  part: Float32Array | Float16Array,
  layout: PartLayout,
  n0: number,
  n1: number,
): void {
  const { outer, rows, row } = layout;
  const len = (n1 - n0) * row;
  for (let o = 0; o < outer; o++) {
    // `set` converts float16 to float32 element by element.
    dst.set(part.subarray(o * len, (o + 1) * len), (o * rows + n0) * row);
  }
}
