/**
 * Quantized rows of the benchmark (`--algos lean-int8,lean-float8e4m3`): lean over K and V
 * quantized on the device (`la.quantize`: int8 with one scale per (token, kv head),
 * float8e4m3 with one per (batch entry, kv head)), beside float16 lean on the same values.
 * The bytes a row reads count the quantized data and the scales (VARIANTS.md). Its error
 * against the float64 result on the unquantized inputs is reported (`quantErr`), and checked
 * against a bound of the format's rounding (a sanity bound: the exact check — attention over
 * quantized K/V equals attention over their dequantized values — is tests/quant_*_test.ts).
 * K/V stored in parts (over one binding: the 512k headline shapes) are quantized part by part
 * and their data is stored in parts where it is still over one binding, so these rows run
 * for every case that runs (the memory rule counts their copies: `_memory.ts`).
 *
 * @module
 */
import type { Case } from "./_sweep.ts";
import { QUANT_ALGOS } from "./_sweep.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { leanAttention, quantize, type QuantizedTensor } from "../mod.ts";
import type { Call } from "./_timing.ts";

export { QUANT_ALGOS };
/** A quantized row's algo. */
export type QuantAlgo = typeof QUANT_ALGOS[number];

/** Whether `a` is a quantized row's algo. */
export function isQuant(a: string): a is QuantAlgo {
  return (QUANT_ALGOS as readonly string[]).includes(a);
}

/** The storage format of a quantized row. */
export function formatOf(algo: QuantAlgo): "int8" | "float8e4m3" {
  return algo === "lean-int8" ? "int8" : "float8e4m3";
}

/** Bytes a quantized row reads: K and V data of the valid keys (1 byte each) and their scales. */
export function quantReadBytes(algo: QuantAlgo, c: Case): number {
  const keys = c.kvLens ? c.kvLens.reduce((a, b) => a + b, 0) : c.B * c.N;
  const scales = formatOf(algo) === "int8" ? keys * c.Hkv : c.B * c.Hkv;
  return 2 * (keys * c.Hkv * c.D + 4 * scales);
}

/** Bytes the quantized K and V hold (data and scales, all N keys). */
export function quantStoredBytes(algo: QuantAlgo, c: Case): number {
  const scales = formatOf(algo) === "int8" ? c.B * c.Hkv * c.N : c.B * c.Hkv;
  return 2 * (c.B * c.Hkv * c.N * c.D + 4 * scales);
}

/**
 * A bound on |out − float64 over the unquantized inputs| from the format's rounding alone:
 * every K and V element moves by at most `rel · max|x|` (int8: half a step of max/127;
 * e4m3: 2⁻⁴ relative), the output by about as much of max|v|, and the scores by
 * `|q|₁ · max|k| · rel · scale`, which scales the weights by `e^{±2Δ}`.
 */
export function quantTolerance(
  algo: QuantAlgo,
  maxV: number,
  maxK: number,
  qL1: number,
  D: number,
): number {
  const rel = formatOf(algo) === "int8" ? 1 / 254 : 2 ** -4;
  const ds = qL1 * maxK * rel / Math.sqrt(D);
  return 2 * (rel * maxV + (Math.exp(2 * ds) - 1) * maxV);
}

/** Quantized K and V of the case and lean over them; `dispose` frees the quantized tensors. */
export function quantRun(algo: QuantAlgo, q: Tensor, k: Tensor, v: Tensor, c: Case): {
  call: Call;
  dispose: () => void;
} {
  const dtype = formatOf(algo);
  const made: QuantizedTensor[] = [];
  const free = () => {
    for (const x of made) {
      x.data.dispose();
      x.scale.dispose();
    }
  };
  try {
    made.push(quantize(k, { dtype }));
    made.push(quantize(v, { dtype }));
  } catch (e) {
    free();
    throw e;
  }
  const [kq, vq] = made;
  const kvLens = c.kvLens;
  return { call: (qq = q) => leanAttention(qq, kq, vq, { kvLens }), dispose: free };
}
