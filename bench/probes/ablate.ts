/**
 * Where the GQA decode kernel's time goes: the library's lean attention timed with the
 * benchmark's method (bench/_timing.ts: one chained command buffer behind a heater, sparse
 * stamps) while parts of the subgroup kernel's key loop are replaced by cheap stand-ins
 * (profiling only: the results are wrong; every loaded word stays live, so the memory traffic
 * is the same). Shapes hold the same K/V bytes with 1, 2, 4 and 8 query rows a key.
 *
 *     deno run -A bench/probes/ablate.ts [--json FILE] [--n 65536] [--unchained] [--check]
 *         [--variants def,lz0,cvt+shf,…] [--shapes "B,Hq,Hkv,N;…"] [--def-only]
 *         [--kv int8|float8e4m3]
 *
 * `--unchained` gives every call the original q (in the chain an ablated call's output,
 * garbage, would be the next call's q); bench/NOTES.md's tables use it. Unchained calls do not
 * read each other's output, so in the runtime's shared compute pass nothing orders them but
 * the reuse of pooled buffers: they may overlap. Use it for WGSL ablations and compare within
 * a run; knob and grid variants give right results and are timed best chained (the default).
 *
 * `--check` compares each variant without WGSL ablations (knobs, grids, `i8h`, `opq`, `lit`, which
 * must not change the result beyond rounding) with flash attention on the same inputs and prints
 * the largest difference; a variant off by more than 1e-2 fails the run.
 *
 * Ablations (`+` combines): `cvt` f16 → f32 unpacking by two integer ops (no conversion), `shf`
 * every `subgroupShuffle`/`…Xor` of the loop (butterfly, probability broadcast) by the lane's
 * own value, `max` the per-batch `subgroupMax` by the lane's own value, `exp` by the identity,
 * `qk1` the dot products of rows > 0 by row 0's (one multiply), `pv1` the P·V update of rows
 * > 0 by one term, `lz0` the vote before the running max defeated (every batch reduces its
 * max, the kernel before the vote), `fm0` cut units merged by the reduce pass instead of in
 * the kernel (`AttentionTuning.fusedMerge` off: two dispatches a call; results right). A token
 * `g<n>` (e.g. `g264`, combinable: `fm0+g128`) runs lean with that grid instead of its default,
 * `inv` with `batchInvariant: true` (combinable with a grid; `inv+sf`: in the subgroup-fold
 * order, `AttentionTuning.foldOrder` on; `inv+pr` / `inv+pr0`: piece runs on / off,
 * `AttentionTuning.pieceRuns`; `inv+pp`: piece runs merging two pieces a barrier,
 * `AttentionTuning.pairedPieces`; `inv+pc256`: the shortest piece 256 keys,
 * `AttentionTuning.invariantPiece`; `pn32`: at most 32 pieces a unit, `invariantPieces`);
 * `wg<n>`, `L<n>`, `U<n>`, `mb<n>` set those kernel knobs (`AttentionTuning`: threads a
 * workgroup, lanes a key, keys a slot per iteration, barriers of the end-of-segment merge),
 * `rs<n>` splits a unit's rows over n row groups of subgroups, `ws` stages K/V tiles in
 * workgroup memory; `lz` / `nolz` turn the vote before the running max on / off
 * (`AttentionTuning.lazyMax`; with the butterfly over K/V with head scales it also turns held
 * mode on / off); `pf` / `pf0` turn prefetching the next batch on / off.
 *
 * `dp4` (int8): q·k by `dot4I8Packed` on K's stored words, q packed to int8 once a segment (no
 * K decode, a quarter of the q·k instructions; the results are wrong, q is not quantized
 * properly): what an opt-in mode with q in int8 would cost at most.
 *
 * `opq` (not an ablation: same results): the NaN/+∞ bit tests with their constants read from the
 * metadata at run time (`_hoist_loads.ts`; the library's form since session 11, so now the same
 * kernel as `def`); `lit` the same tests with literal constants (the form before session 11).
 *
 * `fs1k`, `fs256`, `fg1k`, `fg256` (not ablations: results right within rounding): each segment's
 * key loop cut into pieces of 1024 or 256 keys whose states are folded in registers, per slot
 * (`fs`) or per subgroup after the slots' shuffle sum (`fg`) (`_fold_pieces.ts`): what a piece
 * boundary would cost a batch-invariant kernel that does not end a segment at each piece.
 *
 * `nomg`, `nopub`, `onep` (with `inv+sf`; results wrong): the fold order's merger folds
 * nothing, its subgroup states are not published, a run is not cut into pieces; `onep` and
 * `prnb` with `inv+pr` (piece runs): a run not cut into pieces, a piece's end without its
 * workgroup barriers (racy).
 *
 * `l1` (any K/V): every K/V and scale load of the key loop reads the first 1024 words of its
 * buffer instead (one AND more, the same loads; they hit L1/L2, so the kernel's time without
 * the DRAM stream: what its instructions and latencies alone cost).
 *
 * `--kv int8|float8e4m3` quantizes K and V (`la.quantize`: int8 with token scales, e4m3 with
 * head scales) and times lean over them; two more ablations apply there: `dq` the decode of
 * a packed word to four floats by one integer op each (no conversion), `sc` every scale read
 * in the key loop by the constant 1 (no load, no address); and `i8h`, not an ablation: int8
 * decoded through float16 (the byte ^ 0x80 as the low bits of 1024.0 in a half, unpacked in
 * pairs, 1152 subtracted; exact) instead of `unpack4xI8` and four conversions.
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import type { AttentionTuning } from "../../backends/webgpu/internal.ts";
import { leanAttention, leanAttentionSchedule } from "../../attention/lean.ts";
import { flashAttention } from "../../attention/flash.ts";
import { type Call, decodeInputs, gpuTimesInterleaved } from "../_timing.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import { quantize, type QuantizedTensor } from "../../ops/quantize.ts";
import { editSubgroupKernels } from "./_sg_edit.ts";
import { literalPoison, opaquePoison } from "./_hoist_loads.ts";
import { foldPieces } from "./_fold_pieces.ts";

const ABLATIONS = [
  "cvt",
  "shf",
  "max",
  "exp",
  "qk1",
  "pv1",
  "lz0",
  "dq",
  "sc",
  "i8h",
  "l1",
  "dp4",
  "opq",
  "lit",
  "fs1k",
  "fs256",
  "fg1k",
  "fg256",
  "nomg",
  "nopub",
  "onep",
  "prnb",
] as const;
type Ablation = typeof ABLATIONS[number];
/** Tokens that keep the results (checked against flash by `--check`). */
const KEEP_RESULTS: readonly Ablation[] = ["i8h", "opq", "lit", "fs1k", "fs256", "fg1k", "fg256"];

/** One variant of the command line: its WGSL ablations, kernel knobs and lean grid. */
interface Variant {
  name: string;
  abl: Ablation[];
  tuning: AttentionTuning;
  grid?: number;
  /** `inv`: lean with `batchInvariant: true`. */
  inv?: boolean;
}

/** A variant from its `+`-joined tokens (`def` = none); an unknown token is an error. */
function parseVariant(spec: string): Variant {
  const v: Variant = { name: spec, abl: [], tuning: {} };
  for (const x of spec === "def" ? [] : spec.split("+")) {
    const m = /^(g|wg|L|U|rs|mb|pc|pn)(\d+)$/.exec(x);
    if ((ABLATIONS as readonly string[]).includes(x)) v.abl.push(x as Ablation);
    else if (x === "fm0") v.tuning.fusedMerge = false;
    else if (x === "inv") v.inv = true;
    else if (x === "sf") v.tuning.foldOrder = true;
    else if (x === "pr" || x === "pr0") v.tuning.pieceRuns = x === "pr";
    else if (x === "pp") v.tuning.pairedPieces = true;
    else if (x === "pf" || x === "pf0") v.tuning.pf = x === "pf";
    else if (x === "lz" || x === "nolz") v.tuning.lazyMax = x === "lz";
    else if (m?.[1] === "g") v.grid = Number(m[2]);
    else if (x === "ws") v.tuning.ws = true;
    else if (m?.[1] === "mb") v.tuning.mergeBarriers = Number(m[2]) as 1 | 2 | 3;
    else if (m?.[1] === "pc") v.tuning.invariantPiece = Number(m[2]);
    else if (m?.[1] === "pn") v.tuning.invariantPieces = Number(m[2]);
    else if (m) v.tuning[m[1] as "wg" | "L" | "U" | "rs"] = Number(m[2]);
    else throw new Error(`_ablate: unknown variant token "${x}" in "${spec}"`);
  }
  return v;
}

/**
 * The parts of a run of pieces removed (results wrong): in the fold order (`inv+sf`) `nomg`
 * the merger folds no publication, `nopub` no subgroup state is published; in the fold order
 * or piece runs (`inv+pr`) `onep` a run is one piece (its key loop not cut; the counts no
 * longer match, so cut units are not written); in piece runs `prnb` a piece's end merges its
 * subgroups without workgroup barriers (racy: what the barriers' waits cost).
 */
function foldAblations(code: string, abl: readonly Ablation[]): string {
  const edit = (x: Ablation, from: RegExp, to: string) => {
    if (!abl.includes(x)) return;
    const was = code;
    code = code.replace(from, to);
    if (code === was) throw new Error(`ablate: ${x} needs runs of pieces (inv+sf or inv+pr)`);
  };
  edit("nomg", /for \(var pj = 0u; pj < count; pj\+\+\)/, "for (var pj = 0u; pj < 0u; pj++)");
  edit("nopub", /(let bw = subgroupOr\(bad\);\s*if \(sgi < \d+u)\)/g, "$1 && false)");
  edit("onep", /let pk = pw & 0x7fffffffu;/, "let pk = 0x7fffffffu;");
  if (abl.includes("prnb") && !code.includes("for (var pkb = k0;")) {
    throw new Error("ablate: prnb needs piece runs (inv+pr)");
  }
  edit("prnb", /^\s*workgroupBarrier\(\);$/gm, "");
  return code;
}

/** The subgroup kernel's WGSL with the given parts of its key loop replaced. */
export function ablate(code: string, abl: readonly Ablation[]): string {
  const tests = abl.includes("opq") ? opaquePoison : abl.includes("lit") ? literalPoison : null;
  const fold = abl.find((x) => /^f[sg]/.test(x));
  const folded = fold
    ? foldPieces(code, fold.endsWith("1k") ? 1024 : 256, fold.startsWith("fg"))
    : code;
  const lines = foldAblations(tests ? tests(folded) : folded, abl).split("\n");
  const a = lines.findIndex((l) => /^\s*(for \(var base = |var base = )/.test(l));
  const b = lines.findIndex((l) => l.includes("let badw = subgroupOr(bad);"));
  if (a < 0 || b < a) throw new Error("ablate: key loop not found");
  let packed = 0;
  for (let i = a; i < b; i++) {
    let l = lines[i];
    // q·k in packed int8 dot products: K's words straight into dot4I8Packed with q packed
    // once a segment (results wrong: q is not scaled to int8 properly; timing only).
    if (abl.includes("dp4")) {
      const was = l;
      l = l.replace(/let kf(\d+)_(\d+) = dq_i8h?\(([^()]+)\);/, "let kf$1_$2 = $3;");
      if (l !== was) packed++;
      // The lane's partial sums in int32, converted once.
      l = l.replace(/\bdot\(q(\d+)_(\d+), kf(\d+)_(\d+)\)/g, "dot4I8Packed(qp$1_$2, kf$3_$4)")
        .replace(/= (ksc\d+) \* \((dot4I8Packed.*)\);$/, "= $1 * f32($2);")
        .replace(/= (dot4I8Packed.*);$/, "= f32($1);");
    }
    if (abl.includes("cvt")) l = l.replaceAll("unpack2x16float(", "fk_unpack(");
    if (abl.includes("dq")) l = l.replace(/\bdq_(i8|e4m3)\(([^(),]+)(, qnan)?\)/g, "fk_dq($2)");
    if (abl.includes("i8h")) l = l.replaceAll("dq_i8(", "dq_i8h(");
    if (abl.includes("sc")) l = l.replace(/\b[KV]S\d*\[[^\]]+\]/g, "1.0");
    // Every K/V (and scale) load of the loop from the first 1024 words of its buffer: the
    // same instructions (one AND more), no DRAM stream (the words stay in L1/L2).
    if (abl.includes("l1")) l = l.replace(/\b([KV]S?\d*)\[([^\[\]]+)\]/g, "$1[($2) & 1023u]");
    if (abl.includes("shf")) l = l.replace(/subgroupShuffle(Xor)?\(/g, "fk_sh(");
    if (abl.includes("max")) l = l.replaceAll("subgroupMax(", "fk_id(");
    if (abl.includes("exp")) l = l.replace(/\bexp\(/g, "fk_id(");
    // The vote before the running max (\`lz\`) defeated: every batch reduces its max.
    if (abl.includes("lz0")) l = l.replace("if (subgroupAny(", "if (true || subgroupAny(");
    if (abl.includes("qk1")) {
      l = l.replace(/var s(\d+)_([1-9]\d*) = .*;$/, "var s$1_$2 = s$1_0 * q$2_0.x;");
    }
    if (abl.includes("pv1")) {
      l = l.replace(
        /^(\s*)o([1-9]\d*)_(\d+) = o\2_\3( \* al\2)? \+ (p\d+_\2 \* vf\d+_\3).*;$/,
        "$1o$2_$3 = o$2_$3$4 + $5;",
      );
    }
    lines[i] = l;
  }
  if (abl.includes("dp4")) {
    if (!packed) throw new Error("ablate: dp4 needs int8 K (--kv int8)");
    const qs = lines.slice(0, a).flatMap((l) => [...l.matchAll(/let q(\d+)_(\d+) = /g)]);
    lines.splice(
      a,
      0,
      ...qs.map(([, r, j]) =>
        `    let qp${r}_${j} = pack4xI8(vec4<i32>(clamp(q${r}_${j} * 32.0, vec4<f32>(-127.0), vec4<f32>(127.0))));`
      ),
    );
  }
  return lines.join("\n") + `
fn fk_unpack(w: u32) -> vec2<f32> { return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }
fn fk_sh(x: f32, i: u32) -> f32 { return x; }
fn fk_id(x: f32) -> f32 { return x; }
fn fk_dq(w: u32) -> vec4<f32> {
  let b = (w & 0x007fffffu) | 0x3f800000u;
  return vec4<f32>(bitcast<f32>(b), bitcast<f32>(b ^ 0x100u), bitcast<f32>(b ^ 0x200u), bitcast<f32>(b ^ 0x300u));
}
`;
}

/**
 * Largest |variant − flash| over the outputs of the variants without WGSL ablations; throws
 * when one is off by more than 1e-2 (f16 outputs of O(1) values: rounding is ≈ 1e-3).
 */
async function check(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  variants: readonly Variant[],
  calls: readonly Call[],
): Promise<void> {
  const ref = flashAttention(q, k, v);
  const want = await ref.data();
  ref.dispose();
  const cells: string[] = [];
  for (let i = 0; i < variants.length; i++) {
    if (variants[i].abl.some((a) => !KEEP_RESULTS.includes(a))) continue;
    const out = calls[i](q);
    const got = await out.data();
    out.dispose();
    let worst = 0;
    for (let j = 0; j < want.length; j++) {
      const d = Math.abs(got[j] - want[j]);
      worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
    }
    cells.push(`${variants[i].name} ${worst.toExponential(1)}`);
    if (!(worst <= 1e-2)) {
      throw new Error(`_ablate --check: ${variants[i].name} differs from flash by ${worst}`);
    }
  }
  console.log(`  max |variant − flash|: ${cells.join(" | ")}`);
}

if (import.meta.main) {
  const gpu = await webgpu();
  console.log(`adapter: ${gpu.description}`);
  let current: readonly Ablation[] = [];
  // The attention kernel each variant ran (its pipeline key: the knobs as the code set them).
  let lastKey = "";
  editSubgroupKernels(
    gpu.ctx,
    () =>
      current.length ? { tag: `abl-${current.join("+")}`, edit: (w) => ablate(w, current) } : null,
    (key) => lastKey = key,
  );
  const kernels = new Map<string, string>();
  const ni = Deno.args.indexOf("--n");
  const N = ni >= 0 ? Number(Deno.args[ni + 1]) : 65536;
  // `--shapes B,Hq,Hkv,N;…`: other shapes.
  const si = Deno.args.indexOf("--shapes");
  const shapes = si >= 0
    ? Deno.args[si + 1].split(";").map((x) => x.split(",").map(Number))
    : [[4, 8, 8, N], [4, 16, 8, N], [4, 32, 8, N], [4, 64, 8, N], [16, 32, 8, N / 4]];
  const only = Deno.args.includes("--def-only");
  // \`--variants def,lz0,…\`: these only.
  const vi = Deno.args.indexOf("--variants");
  // By default each of the key loop's six stand-ins (the first ABLATIONS), then combinations.
  const loopAblations = ABLATIONS.slice(0, 6);
  const specs = vi >= 0 ? Deno.args[vi + 1].split(",") : only ? ["def"] : [
    "def",
    ...loopAblations,
    "qk1+pv1",
    "shf+max",
    "cvt+shf+max+exp",
    loopAblations.join("+"),
  ];
  const variants = specs.map(parseVariant);
  const out: Record<string, unknown>[] = [];
  for (const [B, Hq, Hkv, n] of shapes) {
    const inputs = decodeInputs(gpu, [B, Hq, Hkv, n]);
    const { q } = inputs;
    let k: Tensor | QuantizedTensor = inputs.k, v: Tensor | QuantizedTensor = inputs.v;
    let bytes = inputs.bytes;
    // `--kv int8|float8e4m3`: quantized K and V (data and scales counted in the bytes).
    const kvi = Deno.args.indexOf("--kv");
    if (kvi >= 0) {
      const dtype = Deno.args[kvi + 1] as "int8" | "float8e4m3";
      k = quantize(inputs.k, { dtype });
      v = quantize(inputs.v, { dtype });
      inputs.k.dispose();
      inputs.v.dispose();
      bytes = 2 * (B * Hkv * n * 128 + k.scale.size * 4);
    }
    // `--unchained`: every call reads the original q (an ablated call's output is garbage,
    // possibly NaN, and would be the next call's q in the chain).
    const unchained = Deno.args.includes("--unchained");
    const calls: Call[] = variants.map((vr) => (qq = q) => {
      current = vr.abl;
      gpu.attentionTuning = vr.tuning;
      try {
        const out = leanAttention(unchained ? q : qq, k, v, {
          ...(vr.grid ? { grid: vr.grid } : {}),
          ...(vr.inv ? { batchInvariant: true } : {}),
        });
        if (!kernels.has(vr.name)) kernels.set(vr.name, lastKey);
        return out;
      } finally {
        current = [];
        gpu.attentionTuning = {};
      }
    });
    const times = await gpuTimesInterleaved(gpu, calls, 20, 3);
    const grid = leanAttentionSchedule(q, k, v).plan.grid;
    const cells: string[] = [];
    variants.forEach((vr, i) => {
      const t = times[i];
      if (!t) return;
      const g = vr.grid ?? grid;
      out.push({ B, Hq, Hkv, N: n, variant: vr.name, ms: t.ms, passes: t.passes, grid: g });
      cells.push(`${vr.name} ${(t.ms * 1e3).toFixed(1)}`);
    });
    console.log(
      `${B},${Hq},${Hkv},${n} (${(bytes / 1e6).toFixed(0)} MB, grid ${grid}, ${
        (bytes / 4.6e6).toFixed(0)
      } µs at 4.6 TB/s) µs: ${cells.join(" | ")}`,
    );
    for (const vr of variants) console.log(`  ${vr.name}: ${kernels.get(vr.name)}`);
    if (Deno.args.includes("--check")) await check(q, k, v, variants, calls);
    kernels.clear();
    for (const t of [q, k, v]) {
      if ("scale" in t) {
        t.data.dispose();
        t.scale.dispose();
      } else t.dispose();
    }
  }
  const i = Deno.args.indexOf("--json");
  if (i >= 0) await Deno.writeTextFile(Deno.args[i + 1], JSON.stringify(out, null, 1));
}
