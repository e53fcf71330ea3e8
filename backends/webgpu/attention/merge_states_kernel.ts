/**
 * WGSL of the merge-states kernel (`mergeAttentionStates`): folds a list of attention states
 * `(out, lse)` in order, a few states a dispatch, carrying an f32 accumulator between
 * dispatches. The dispatches are in `merge_states.ts`.
 *
 * @module
 */
import { type Elem, probScales } from "./_wgsl_meta.ts";
import { NONFINITE } from "./_wgsl_visibility.ts";

/** Threads per workgroup of the merge-states kernel. */
export const MERGE_WG = 128;

/** Configuration of one merge-states dispatch. */
export interface MergeConfig {
  /** Storage type of each input out (one per state in this dispatch). */
  ins: Elem[];
  /** Whether an f32 accumulator `(m, l, o)` from an earlier dispatch is read. */
  hasAcc: boolean;
  /** Whether this dispatch writes the final out/lse (else an accumulator). */
  final: boolean;
  /** Output storage type (final only). */
  out: Elem;
}

/** Pipeline cache key of a merge dispatch. */
export function mergeKey(c: MergeConfig): string {
  return `merge:${c.ins.join(",")}:acc${c.hasAcc}:final${c.final}:${c.out}`;
}

/**
 * WGSL of one merge-states dispatch: folds the accumulator (if any) and the listed states in
 * order. Bindings: meta (rows, D, nx, −∞ bits, probability shift), [acc in], (out_i,
 * lse_i)…, then out + lse (final) or acc out. An accumulator holds `m, l` per row then `o`
 * per row, as f32 (l and o scaled by 2^-shift).
 */
export function mergeWgsl(c: MergeConfig): string {
  const f16 = c.ins.includes("f16") || (c.final && c.out === "f16");
  const decl: string[] = [`@group(0) @binding(0) var<storage, read> mt: array<u32>;`];
  let bind = 1;
  if (c.hasAcc) decl.push(`@group(0) @binding(${bind++}) var<storage, read> ACCI: array<f32>;`);
  c.ins.forEach((t, i) => {
    decl.push(`@group(0) @binding(${bind++}) var<storage, read> O${i}: array<${t}>;`);
    decl.push(`@group(0) @binding(${bind++}) var<storage, read> L${i}: array<f32>;`);
  });
  if (c.final) {
    decl.push(`@group(0) @binding(${bind++}) var<storage, read_write> OUT: array<${c.out}>;`);
    decl.push(`@group(0) @binding(${bind++}) var<storage, read_write> LSE: array<f32>;`);
  } else {
    decl.push(`@group(0) @binding(${bind++}) var<storage, read_write> ACCO: array<f32>;`);
  }
  const fold = (mB: string, lB: string, oB: string) => `
  {
    let mB = ${mB};
    let mN = max(m, mB);
    if (mN != ninf) {
      let al = select(0.0, exp(m - mN), m != ninf);
      let be = select(0.0, exp(mB - mN), mB != ninf);
      l = al * l + be * ${lB};
      o = al * o + be * ${oB};
      m = mN;
    }
  }`;
  return `${f16 ? "enable f16;" : ""}
// merge states: ${mergeKey(c)}
${decl.join("\n")}
${NONFINITE}
@compute @workgroup_size(${MERGE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let rows = mt[0];
  let D = mt[1];
  let x = (wid.x + wid.y * mt[2]) * ${MERGE_WG}u + tid;
  let ninf = bitcast<f32>(mt[3]);
  let qnan = bitcast<f32>(mt[3] | 0x7fc00000u);
  // D = 0 (outs of shape [..., 0]): one thread a row still merges the lse.
  let hasD = D > 0u;
  let Dd = max(D, 1u);
  if (x >= rows * Dd) { return; }
  let row = x / Dd;
  let d = x % Dd;
  // A NaN or +∞ lse makes its row NaN (as IEEE arithmetic does on the CPU). A state (out,
  // lse) joins as (m = lse, l = psc, o = out · psc), psc = 2^-K for K = probShift(states):
  // scaled as in the attention kernels, so the running o stays within max |out|.
${probScales("mt[4]", "  ")}
  var bad = false;
  var m = ninf;
  var l = 0.0;
  var o = 0.0;
  ${
    c.hasAcc
      ? `bad = is_nan(ACCI[row * 2u + 1u]);
  ${fold("ACCI[row * 2u]", "ACCI[row * 2u + 1u]", "select(0.0, ACCI[rows * 2u + x], hasD)")}`
      : ""
  }
  ${
    c.ins.map((_, i) =>
      `bad = bad || poison_score(L${i}[row]);
  ${fold(`L${i}[row]`, "psc", `select(0.0, f32(O${i}[x]) * psc, hasD)`)}`
    ).join("\n")
  }
  ${
    c.final
      ? `if (hasD) { OUT[x] = ${c.out}(select(select(0.0, o / l, l != 0.0), qnan, bad)); }
  if (d == 0u) { LSE[row] = select(select(ninf, m + log(l * pun), l != 0.0), qnan, bad); }`
      : `if (hasD) { ACCO[rows * 2u + x] = o; }
  if (d == 0u) { ACCO[row * 2u] = m; ACCO[row * 2u + 1u] = select(l, qnan, bad); }`
  }
}
`;
}
