/**
 * Quantized K/V given to the attention ops (VARIANTS.md, "Quantized KV"): k and v as
 * `QuantizedTensor`s of one format, checked and unpacked into the data the kernels read and
 * the scales they get in `AttentionInputs.kScale`/`vScale`.
 *
 * @module
 */
import { checkQuantized, type QuantizedTensor } from "../ops/quantize.ts";
import { DTypeError, ShapeError, show } from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";

/** Quantized K/V unpacked: the data tensors, their scales and where the scales vary. */
export interface QuantKV {
  k: Tensor;
  v: Tensor;
  kScale: Tensor;
  vScale: Tensor;
  /** `AttentionPlan.kvScales`: one scale per key ("token", int8) or per head (float8e4m3). */
  kvScales: "token" | "head";
}

/** Whether `x` is given as quantized data (`{ dtype, data, scale }`, not a Tensor). */
export function isQuantized(x: unknown): x is QuantizedTensor {
  return x !== null && typeof x === "object" && !(x instanceof Tensor) && "scale" in x &&
    "data" in x;
}

function describe(x: unknown): string {
  if (isQuantized(x)) return `a ${show(x.dtype)} QuantizedTensor`;
  if (x instanceof Tensor) return `a ${x.dtype} Tensor`;
  return show(x);
}

/**
 * k and v unpacked when either is quantized (null when neither is). Throws
 * {@link DTypeError} when only one is, or they differ in format, and the errors of
 * `dequantize`'s checks (data dtype, scales float32 of the format's shape, one backend).
 */
export function quantizedKV(op: string, k: unknown, v: unknown): QuantKV | null {
  const kq = isQuantized(k);
  const vq = isQuantized(v);
  if (!kq && !vq) return null;
  if (!kq || !vq) {
    throw new DTypeError(
      `${op}: k and v must both be quantized (QuantizedTensor from quantize) or both tensors, ` +
        `got k ${describe(k)} and v ${describe(v)}`,
    );
  }
  const kc = checkQuantized(op, "k", k);
  const vc = checkQuantized(op, "v", v);
  if (kc.dtype !== vc.dtype) {
    throw new DTypeError(
      `${op}: k and v must be quantized in one format, got k ${kc.dtype} and v ${vc.dtype}`,
    );
  }
  if (fmt(kc.data.shape) !== fmt(vc.data.shape)) {
    throw new ShapeError(
      `${op}: k and v must have the same shape, got k ${fmt(kc.data.shape)}, v ${
        fmt(vc.data.shape)
      }`,
    );
  }
  return {
    k: kc.data,
    v: vc.data,
    kScale: kc.scale,
    vScale: vc.scale,
    kvScales: kc.scale.rank === 3 ? "token" : "head",
  };
}
