/**
 * CPU kernels of `la.quantize` and `la.dequantize` (formats in VARIANTS.md, "Quantized KV").
 * The WebGPU kernels (`backends/webgpu/_quantize.ts`) take the same steps in float32.
 *
 * @module
 */
import type { QuantDType } from "../../tensor/dtype.ts";
import { E4M3_VALUES, encodeE4M3, roundHalfEven } from "../../tensor/float8.ts";
import { quantBlock, quantTop, scaleShape } from "../../tensor/quant_format.ts";
import { sizeOf } from "../../tensor/shape.ts";
import type { TensorInfo } from "../backend.ts";
import {
  allocCpu,
  allocCpuQuant,
  type CpuArray,
  type CpuQuantArray,
  cpuQuantValues,
  cpuValues,
} from "./_storage.ts";

/**
 * Quantizes x `[B, H, N, D]`: per block, scale = max|x| / (127 or 448) in float32 and data
 * = round(x / scale). A block holding NaN or ±∞ gets scale NaN and data 0; a block of zeros
 * scale 0 and data 0.
 */
export function quantizeCpu(
  x: TensorInfo,
  dtype: QuantDType,
): { data: CpuQuantArray; scale: CpuArray } {
  const v = cpuValues(x);
  const block = quantBlock(dtype, x.shape);
  const blocks = sizeOf(scaleShape(dtype, x.shape));
  const data = allocCpuQuant(v.length, dtype);
  const scale = allocCpu(blocks, "float32");
  const top = quantTop(dtype);
  for (let b = 0; b < blocks; b++) {
    const at = b * block;
    let amax = 0;
    for (let i = at; i < at + block; i++) {
      const a = Math.abs(v[i]);
      if (!(a <= Number.MAX_VALUE)) { // NaN or ∞
        amax = NaN;
        break;
      }
      if (a > amax) amax = a;
    }
    const s = Math.fround(amax / top);
    scale[b] = s;
    if (!(s > 0) || !Number.isFinite(s)) continue; // zeros, NaN: data stays 0
    for (let i = at; i < at + block; i++) {
      const t = Math.fround(v[i] / s);
      data[i] = dtype === "int8" ? Math.max(-127, Math.min(127, roundHalfEven(t))) : encodeE4M3(t);
    }
  }
  return { data, scale };
}

/** float32 `scale · value` of every element of quantized `data` (see {@link quantizeCpu}). */
export function dequantizeCpu(data: TensorInfo, scale: TensorInfo): Float32Array {
  const q = cpuQuantValues(data);
  const s = cpuValues(scale);
  const dtype = data.dtype as QuantDType;
  const block = quantBlock(dtype, data.shape);
  const out = allocCpu(q.length, "float32") as Float32Array;
  const e4m3 = dtype === "float8e4m3";
  for (let i = 0; i < q.length; i++) {
    out[i] = s[Math.floor(i / block)] * (e4m3 ? E4M3_VALUES[q[i]] : q[i]);
  }
  return out;
}
