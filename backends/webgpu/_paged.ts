/**
 * Page rows on the GPU (the Backend's paged K/V capabilities, `backends/backend.ts`): an
 * int32 index table, and gathering / scattering rows of pages `[P, H, pageSize, D]` to and
 * from a contiguous `[B, H, n, D]` tensor. The row list is uploaded (a queue write), never
 * read back. Both kernels work on the u32 words of the storage, whatever the dtype: where a
 * row's bytes are a multiple of 4 a word is copied whole; else each invocation assembles one
 * destination word byte by byte, and the scatter — whose edge words a neighbouring row may
 * share — writes its bytes with `atomicAnd` / `atomicOr` on disjoint masks, so two rows
 * sharing a word cannot race (the order of the four atomics does not change the result).
 *
 * @module
 */
import type { DataId, TensorInfo } from "../backend.ts";
import { ArgumentError, DTypeError, ShapeError } from "../../tensor/errors.ts";
import type { GpuContext } from "./context.ts";
import { checkBinding, grid2d } from "./attention/_launch_limits.ts";

const WG = 256;

/** An int32 table on the device (stored as 4-byte words, bits unchanged). */
export function createIndexTable(
  upload: (values: Float32Array) => DataId,
  values: Int32Array,
): DataId {
  // The upload writes the array's bytes as they are (float32 storage is not converted).
  return upload(new Float32Array(values.buffer, values.byteOffset, values.length));
}

/** Sizes of a page-rows call, checked. */
interface PageGeometry {
  /** Pages, heads, tokens a page, head dim. */
  P: number;
  H: number;
  PS: number;
  D: number;
  /** Stored bytes an element. */
  e: number;
}

function pageGeometry(
  ctx: GpuContext,
  op: string,
  pages: TensorInfo,
  rows: Int32Array,
): PageGeometry {
  if (pages.shape.length !== 4) {
    throw new ShapeError(
      `${op}: pages must be [P, H, pageSize, D], got [${pages.shape.join(", ")}]`,
    );
  }
  const [P, H, PS, D] = pages.shape;
  const n = P * H * PS * D;
  const e = n === 0 ? 4 : ctx.byteLength(pages.id) / n;
  for (let i = 0; i < rows.length; i++) {
    if (!Number.isInteger(rows[i]) || rows[i] >= P * PS) {
      throw new ArgumentError(
        `${op}: rows[${i}] = ${rows[i]} is not a row of the pages (0 ≤ row < P · pageSize = ` +
          `${P * PS}, or negative for none)`,
      );
    }
  }
  checkBinding(ctx, `${op} pages`, ctx.byteLength(pages.id));
  return { P, H, PS, D, e };
}

/** WGSL of the destination row of list entry `ri`'s row `r` for head `h` (a row index). */
const PAGE_ROW = "((u32(r) / PS) * H + h) * PS + u32(r) % PS";

/** WGSL header: sizes from the params words. */
function header(bindings: string): string {
  return `${bindings}
@group(0) @binding(0) var<storage, read> prm: array<u32>;
@group(0) @binding(1) var<storage, read> ROWS: array<i32>;
fn byte_of(w: u32, gb: u32) -> u32 { return (w >> ((gb & 3u) * 8u)) & 0xffu; }`;
}

const MAIN = `@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * ${WG}u;
  let H = prm[0]; let PS = prm[1]; let n = prm[2]; let RB = prm[3]; let total = prm[4];
  if (idx >= total) { return; }`;

/** The list entry and head of an output row index `orow` of `[B, H, n, D]`. */
const OUT_ROW = `fn entry_of(orow: u32, H: u32, n: u32) -> vec2<u32> {
  let b = orow / (H * n);
  return vec2<u32>(b * n + orow % n, (orow / n) % H);
}`;

/**
 * Gather: one invocation per output word. With aligned rows (`RB` bytes, a multiple of 4) a
 * word is copied at once, else each byte of the word is looked up (a word may span rows).
 */
function gatherKernel(aligned: boolean): string {
  const body = aligned
    ? `  let W = RB / 4u;
  let eh = entry_of(idx / W, H, n);
  let r = ROWS[eh.x];
  if (r < 0) { OUT[idx] = 0u; return; }
  let h = eh.y;
  OUT[idx] = SRC[(${PAGE_ROW}) * W + idx % W];`
    : `  let nb = prm[5];
  var w = 0u;
  for (var k = 0u; k < 4u; k++) {
    let gb = idx * 4u + k;
    let eh = entry_of(gb / RB, H, n);
    let r = ROWS[eh.x];
    if (gb < nb && r >= 0) {
      let h = eh.y;
      let sb = (${PAGE_ROW}) * RB + gb % RB;
      w |= byte_of(SRC[sb >> 2u], sb) << (k * 8u);
    }
  }
  OUT[idx] = w;`;
  return `${
    header(`@group(0) @binding(2) var<storage, read> SRC: array<u32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<u32>;`)
  }
${OUT_ROW}
${MAIN}
${body}
}`;
}

/**
 * Scatter: one invocation per (list entry, head, word of the destination row's span). With
 * aligned rows the span is the row's words, stored plainly; else it is the words the row's
 * bytes touch (one more than a row's worth at most), updated with disjoint-mask atomics.
 */
function scatterKernel(aligned: boolean): string {
  const dst = aligned
    ? "@group(0) @binding(3) var<storage, read_write> DST: array<u32>;"
    : "@group(0) @binding(3) var<storage, read_write> DST: array<atomic<u32>>;";
  const body = aligned
    ? `  let W = RB / 4u;
  let ri = idx / (H * W);
  let h = (idx / W) % H;
  let j = idx % W;
  let r = ROWS[ri];
  if (r < 0) { return; }
  let srow = ((ri / n) * H + h) * n + ri % n;
  DST[(${PAGE_ROW}) * W + j] = SRC[srow * W + j];`
    : `  let WS = prm[5];
  let ri = idx / (H * WS);
  let h = (idx / WS) % H;
  let r = ROWS[ri];
  if (r < 0) { return; }
  let rb0 = (${PAGE_ROW}) * RB;
  let word = rb0 / 4u + idx % WS;
  if (word * 4u >= rb0 + RB) { return; }
  let sb0 = (((ri / n) * H + h) * n + ri % n) * RB;
  var bits = 0u;
  var mask = 0u;
  for (var k = 0u; k < 4u; k++) {
    let gb = word * 4u + k;
    if (gb >= rb0 && gb < rb0 + RB) {
      let sb = sb0 + gb - rb0;
      bits |= byte_of(SRC[sb >> 2u], sb) << (k * 8u);
      mask |= 0xffu << (k * 8u);
    }
  }
  if (mask == 0xffffffffu) {
    atomicStore(&DST[word], bits);
  } else {
    atomicAnd(&DST[word], ~mask);
    atomicOr(&DST[word], bits);
  }`;
  return `${
    header(`@group(0) @binding(2) var<storage, read> SRC: array<u32>;
${dst}`)
  }
${MAIN}
${body}
}`;
}

/** `[B, H, n, D]` gathered from page rows (zeros where a row is negative). */
export function gatherPageRows(
  ctx: GpuContext,
  pages: TensorInfo,
  rows: Int32Array,
  B: number,
  n: number,
): DataId {
  const op = "gatherPageRows";
  if (!Number.isInteger(B) || !Number.isInteger(n) || B < 0 || n < 0 || rows.length !== B * n) {
    throw new ShapeError(`${op}: rows must hold B · n = ${B} · ${n} entries, got ${rows.length}`);
  }
  const { H, PS, D, e } = pageGeometry(ctx, op, pages, rows);
  const RB = D * e;
  const bytes = B * H * n * RB;
  checkBinding(ctx, `${op} output`, bytes);
  const aligned = RB % 4 === 0;
  const words = Math.ceil(bytes / 4);
  const out = ctx.alloc(B * H * n * D, pages.dtype);
  if (words === 0) return out;
  try {
    const pipe = ctx.pipeline(`page-gather:${aligned}`, () => gatherKernel(aligned), "main");
    const prm = new Uint32Array([H, PS, n, RB, words, bytes]);
    ctx.dispatch(
      pipe,
      [ctx.scratchFrom(prm), ctx.scratchFrom(rows), ctx.buffer(pages.id), ctx.buffer(out)],
      grid2d(ctx, Math.ceil(words / WG)),
      op,
    );
  } catch (err) {
    ctx.release(out);
    throw err;
  }
  return out;
}

/** Writes `src` `[B, H, n, D]` into page rows in place (nowhere where a row is negative). */
export function scatterPageRows(
  ctx: GpuContext,
  pages: TensorInfo,
  src: TensorInfo,
  rows: Int32Array,
): void {
  const op = "scatterPageRows";
  const [P, H, PS, D] = pages.shape;
  if (src.shape.length !== 4 || src.shape[1] !== H || src.shape[3] !== D) {
    throw new ShapeError(
      `${op}: src must be [B, ${H}, n, ${D}] (the pages' heads and head dim), got ` +
        `[${src.shape.join(", ")}]`,
    );
  }
  const [B, , n] = src.shape;
  if (rows.length !== B * n) {
    throw new ShapeError(`${op}: rows must hold B · n = ${B} · ${n} entries, got ${rows.length}`);
  }
  if (src.dtype !== pages.dtype) {
    throw new DTypeError(`${op}: src is ${src.dtype}, the pages ${pages.dtype}`);
  }
  const { e } = pageGeometry(ctx, op, pages, rows);
  checkBinding(ctx, `${op} src`, ctx.byteLength(src.id));
  const seen = new Set<number>();
  for (const r of rows) {
    if (r < 0) continue;
    if (seen.has(r)) {
      throw new ArgumentError(`${op}: row ${r} is listed twice (rows must be distinct)`);
    }
    seen.add(r);
  }
  const RB = D * e;
  const aligned = RB % 4 === 0;
  const span = aligned ? RB / 4 : Math.ceil(RB / 4) + 1;
  const total = B * n * H * span;
  if (total === 0 || P === 0) return;
  const pipe = ctx.pipeline(`page-scatter:${aligned}`, () => scatterKernel(aligned), "main");
  const prm = new Uint32Array([H, PS, n, RB, total, span]);
  ctx.dispatch(
    pipe,
    [ctx.scratchFrom(prm), ctx.scratchFrom(rows), ctx.buffer(src.id), ctx.buffer(pages.id)],
    grid2d(ctx, Math.ceil(total / WG)),
    op,
  );
}
