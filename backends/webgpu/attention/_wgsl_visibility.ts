/**
 * The scoring and visibility pieces every attention kernel shares: which keys a query row
 * sees (bottom-right causal) and how a non-finite score poisons its row. A new masking
 * variant (a sliding window) is a change here and in the plan, not in each kernel body.
 *
 * @module
 */

/**
 * Bit tests for non-finite values. Compilers may assume no NaN in float arithmetic (and WGSL's
 * `max` may return the other operand), so poisoned rows are tracked with integer tests on the
 * bits: a visible score that is NaN or +∞ makes its row NaN (the float64 reference's IEEE
 * result), and partial states carry that as l = NaN.
 */
export const NONFINITE = `
fn poison_score(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) >= 0x7f800000u && b != 0xff800000u;
}
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
`;

/**
 * {@link NONFINITE} with the tests' constants derived at run time from `negInf`, a WGSL
 * expression of −∞'s bits (0xff800000) that the compiler cannot see through (the subgroup
 * kernel passes the metadata word `mt[META.negInfBits]`). The same tests; on an H100 the
 * subgroup kernel ran multi-head decode 0.3–1.8 % faster with them and GQA decode alike
 * (bench/NOTES.md, sessions 10 and 11; verified there in session 11).
 */
export function nonFiniteFrom(negInf: string): string {
  const mag = `(${negInf} & 0x7fffffffu)`;
  return `
fn poison_score(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) >= ${mag} && b != ${negInf};
}
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > ${mag}; }
`;
}

/** Keys visible to query row `i` of a sequence of `len` keys (bottom-right causal). */
const VISIBLE_FN = `
fn visible(len: u32, Sq: u32, i: u32, causal: bool) -> u32 {
  if (!causal) { return len; }
  // len − Sq + i + 1, clamped to [0, len] without unsigned wrap-around.
  let a = len + i + 1u;
  return select(min(a - Sq, len), 0u, a <= Sq);
}
`;

/** The NaN/+∞ tests and `visible`, for kernels without the metadata binding. */
export const VISIBLE = NONFINITE + VISIBLE_FN;

/** The NaN/+∞ tests ({@link nonFiniteFrom}) and `visible`, for kernels that bind the metadata. */
export function visibleFrom(negInf: string): string {
  return nonFiniteFrom(negInf) + VISIBLE_FN;
}
