/**
 * The CPU kernel of rotary embedding (see `Backend.rope`): pairs rotated in JS doubles,
 * rounded once when stored.
 *
 * @module
 */
import type { TensorInfo } from "../backend.ts";
import { allocCpu, type CpuArray, cpuValues } from "./_storage.ts";

/** Rotary embedding of x `[B, H, S, D]` by table rows `rows[b·S + s]`. */
export function ropeCpu(
  x: TensorInfo,
  cos: TensorInfo,
  sin: TensorInfo,
  rows: TensorInfo,
  rotaryDim: number,
  interleaved: boolean,
): CpuArray {
  const [B, H, S, D] = x.shape;
  const v = cpuValues(x);
  const c = cpuValues(cos);
  const s = cpuValues(sin);
  const r = cpuValues(rows);
  const half = rotaryDim / 2;
  const out = allocCpu(v.length, x.dtype);
  out.set(v); // features past rotaryDim pass through
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < S; t++) {
        const base = ((b * H + h) * S + t) * D;
        const row = r[b * S + t] * half;
        for (let k = 0; k < half; k++) {
          const i0 = base + (interleaved ? 2 * k : k);
          const i1 = base + (interleaved ? 2 * k + 1 : k + half);
          const a = v[i0], bb = v[i1], cs = c[row + k], sn = s[row + k];
          out[i0] = a * cs - bb * sn;
          out[i1] = a * sn + bb * cs;
        }
      }
    }
  }
  return out;
}
