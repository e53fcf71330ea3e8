/**
 * The float8 E4M3 format of OCP's 8-bit floating point spec ("E4M3FN"): 1 sign bit, 4
 * exponent bits with bias 7, 3 mantissa bits; no infinities, largest finite value 448, NaN
 * only as S.1111.111; subnormals are multiples of 2⁻⁹. Encoding rounds to nearest, ties to
 * even. The WebGPU kernels encode with the same steps (`backends/webgpu/_quantize.ts`), so
 * both backends store the same code for the same float32 input.
 *
 * @module
 */

/** Largest finite E4M3 magnitude. */
export const E4M3_MAX = 448;
/** The canonical NaN code (positive sign); 0xff is the other NaN. */
export const E4M3_NAN = 0x7f;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The E4M3 code nearest to `x` (ties to even). NaN gives {@link E4M3_NAN}; magnitudes
 * beyond 448 (including ±∞) saturate to ±448 — callers refuse such values before encoding
 * where saturation would be wrong (creation does; quantize scales into range first).
 */
export function encodeE4M3(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 24) & 0x80;
  const a = bits & 0x7fffffff;
  if (a > 0x7f800000) return E4M3_NAN;
  if (a >= 0x43e00000) return sign | 0x7e; // |x| ≥ 448: saturate (448 = 0x43e00000)
  if (a < 0x3c800000) {
    // |x| < 2⁻⁶, the smallest normal: the code is |x| in steps of 2⁻⁹ (exact scaling; the
    // result 8 is the code of 2⁻⁶ itself, so the carry into the normal range is right).
    return sign | roundHalfEven(Math.abs(f32[0]) * 512);
  }
  // Keep 3 of float32's 23 mantissa bits, rounding the 20 dropped ones to nearest even; a
  // carry out of the mantissa bumps the exponent, which is what rounding up should do.
  const r = (a + 0x7ffff + ((a >>> 20) & 1)) >>> 20;
  const code = r - (120 << 3); // rebias the exponent: 127 → 7
  return sign | Math.min(code, 0x7e);
}

/** The value of E4M3 code `c` (0..255). */
export function decodeE4M3(c: number): number {
  const sign = c & 0x80 ? -1 : 1;
  const e = (c >>> 3) & 15;
  const m = c & 7;
  if (e === 15 && m === 7) return NaN;
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (1 + m / 8) * 2 ** (e - 7);
}

/** The 256 decoded values, indexed by code (for decoding whole arrays). */
export const E4M3_VALUES: Float32Array = Float32Array.from(
  { length: 256 },
  (_, c) => decodeE4M3(c),
);

/** Round half to even (what WGSL's `round` does), so both backends agree on ties. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
