/**
 * The WGSL kernel of rotary embedding (see `Backend.rope`): one thread an output element,
 * which reads its pair partner and its row's cos/sin (the tables are float32, computed on
 * the host in float64 or given by the caller, so no angle is formed in f32 here).
 *
 * @module
 */
import type { DataId, TensorInfo } from "../backend.ts";
import { sizeOf } from "../../tensor/shape.ts";
import type { GpuContext } from "./context.ts";
import { checkFits, params, WG } from "./_kernels.ts";
import { BUILTINS, declare, declareParams, grid, header, store, WG_INDEX } from "./_wgsl.ts";

/** Rotary embedding of x `[B, H, S, D]` by table rows `rows[b·S + s]`. */
export function ropeKernel(
  ctx: GpuContext,
  x: TensorInfo,
  cos: TensorInfo,
  sin: TensorInfo,
  rows: TensorInfo,
  rotaryDim: number,
  interleaved: boolean,
): DataId {
  const [, H, S, D] = x.shape;
  const n = sizeOf(x.shape);
  checkFits(ctx, "rope", [x, cos, sin, rows], n, x.dtype);
  const out = ctx.alloc(n, x.dtype);
  if (n === 0) return out;
  const key = `rope:${x.dtype}:${cos.dtype}:${rows.dtype}:${interleaved}`;
  // p: n, D, rotaryDim / 2, H, S
  const pair = interleaved
    ? `let k = d / 2u; let first = (d & 1u) == 0u; let mate = select(i - 1u, i + 1u, first);`
    : `let first = d < half; let k = select(d - half, d, first);
  let mate = select(i - half, i + half, first);`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [x.dtype, cos.dtype, rows.dtype])}
${declare(ctx, 0, "x", x.dtype, "read")}
${declare(ctx, 1, "cs", cos.dtype, "read")}
${declare(ctx, 2, "sn", sin.dtype, "read")}
${declare(ctx, 3, "rows", rows.dtype, "read")}
${declare(ctx, 4, "y", x.dtype, "read_write")}
${declareParams(5)}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let i = ${WG_INDEX} * ${WG}u + lid;
  if (i >= p[0]) { return; }
  let D = p[1];
  let half = p[2];
  let d = i % D;
  let v = f32(x[i]);
  if (d >= 2u * half) { y[i] = ${store(ctx, x.dtype, "v")}; return; }
  ${pair}
  let r = i / D; // (b·H + h)·S + s
  let s = r % p[4];
  let b = r / p[4] / p[3];
  let t = u32(f32(rows[b * p[4] + s])) * half + k;
  let c = f32(cs[t]);
  let sv = f32(sn[t]);
  let m = f32(x[mate]);
  y[i] = ${store(ctx, x.dtype, "select(m * sv + v * c, v * c - m * sv, first)")};
}`);
  ctx.dispatch(
    pipe,
    [
      ctx.buffer(x.id),
      ctx.buffer(cos.id),
      ctx.buffer(sin.id),
      ctx.buffer(rows.id),
      ctx.buffer(out),
      params(ctx, [n, D, rotaryDim / 2, H, S]),
    ],
    grid(ctx, Math.ceil(n / WG)),
    "rope",
  );
  return out;
}
