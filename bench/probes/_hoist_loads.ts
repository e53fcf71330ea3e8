import { META, META_SEG_OFFS } from "../../backends/webgpu/attention/_wgsl_meta.ts";

// WGSL edits of the library's subgroup kernel (prefetch on) that move its first K/V batch and/or
// q loads out of the segment: before the segment loop, and (form `next`) for the next segment
// after the key loop (`next+opq`: that, with the NaN tests of form `opq`). Used by
// early_loads_repro.ts (bits) and segment_cost.ts (`--abl epkv`, `--abl epkvopq`).
// The moved loads read the same addresses and compute the same values, so the bits must be the
// unmodified kernel's; only the place of the loads differs.

export type Form = "" | "init" | "bar" | "arr" | "fin" | "np" | "opq" | "next" | "next+opq";

/** The kernel with its first-batch loads (`kv`) and/or q loads hoisted before the segments. */
export function hoist(
  code: string,
  kv: boolean,
  q: boolean,
  guard: boolean,
  form: Form = "",
): string {
  const next = form === "next" || form === "next+opq";
  if (next && (q || !kv)) throw new Error("hoist_loads: next is for K/V alone");
  const base = baseEdit(form)(code);
  const lines = base.split("\n");
  const at = (re: RegExp, from = 0) => {
    const i = lines.findIndex((l, j) => j >= from && re.test(l));
    if (i < 0) throw new Error(`hoist_loads: no line ${re} in the kernel`);
    return i;
  };
  const loop = at(/^ {2}for \(var si = segA; si < segB; si\+\+\) \{$/);
  const pass = at(/^ {4}for \(var rc = 0u;/, loop);
  const klast = at(/^ {4}let klast = /, pass);
  const fields = lines.slice(loop + 1, pass).filter((l) => !l.trim().startsWith("//"));
  const rows = lines.slice(pass + 1, klast + 1).filter((l) => !/let (fr|act) = /.test(l));
  const isKv = (l: string) => /^ {4}(let kr0_\d+ = |var n[kv]a\d+_\d+ = )/.test(l);
  const isQ = (l: string) => /^ {4}let q\d+_\d+ = scale \* /.test(l);
  const moved = lines.map((l, i) => i > klast && ((kv && isKv(l)) || (q && isQ(l))));
  const hoisted = lines.filter((_, i) => moved[i]);
  if (!hoisted.length) throw new Error("hoist_loads: nothing to hoist (prefetch off?)");
  const kT = /var<storage, read> K: array<([^>]+>)>;/.exec(base)?.[1];
  if (!kT) throw new Error("hoist_loads: K's element type not found");
  const decls = hoisted.flatMap((l) => {
    const m = /^ {4}(?:var|let) (n[kv]a\d+_\d+|q\d+_\d+) = /.exec(l);
    if (!m) return [];
    const t = m[1].startsWith("q") ? "vec4<f32>" : kT;
    return [`  var ${m[1]}: ${t}${form === "init" ? ` = ${t}()` : ""};`];
  });
  const assign = hoisted.map((l) =>
    l.replace(/^ {4}var (n[kv]a)/, "    $1").replace(/^ {4}let (q\d)/, "    $1")
  );
  const segAll = `mt[${META_SEG_OFFS}u + mt[${META.numWorkers}]]`;
  const prologue = [
    ...decls,
    guard ? "  if (segA < segB) {" : "  {",
    `    let si = min(segA, max(${segAll}, 1u) - 1u);`,
    ...fields,
    "    let rc = 0u;",
    ...rows,
    ...assign,
    "  }",
    ...(form === "bar" ? ["  workgroupBarrier();"] : []),
  ];
  if (next) {
    const keys = at(/^ {4}for \(var base = k0; /, klast);
    const end = at(/^ {4}\}$/, keys);
    const sub = (l: string) => "  " + l.replace(/\bsi\b/g, "sn");
    lines.splice(end + 1, 0, ...[
      "    if (si + 1u < segB) {",
      "      let sn = si + 1u;",
      ...fields.map(sub),
      "      let rc = 0u;",
      ...rows.map(sub),
      ...assign.map(sub),
      "    }",
    ]);
    moved.splice(
      end + 1,
      0,
      ...new Array(fields.length + rows.length + assign.length + 4).fill(false),
    );
  }
  const out = lines.filter((_, i) => !moved[i]);
  out.splice(loop, 0, ...prologue);
  return form === "arr" ? toArrays(out.join("\n"), decls, kT) : out.join("\n");
}

/**
 * The edit a form makes to both the kernel and its reference: `fin` −∞ as −3e38 (`finite`),
 * `np` no NaN/+∞ detection (`noPoison`), `opq` and `next+opq` the detection's constants read at
 * run time (`opaquePoison`); none for the other forms.
 */
export function baseEdit(form: Form): (code: string) => string {
  const b = baseForm(form);
  if (b === "fin") return finite;
  if (b === "np") return noPoison;
  return b === "opq" ? opaquePoison : (code) => code;
}

/** The form whose base edit `form` makes (its reference kernel's form). */
export function baseForm(form: Form): "" | "fin" | "np" | "opq" {
  if (form === "next+opq") return "opq";
  return form === "fin" || form === "np" || form === "opq" ? form : "";
}

/** The kernel with the bodies of its NaN/+∞ tests (`poison_score`, `is_nan`) replaced. */
function withNanTests(code: string, poisonBody: string, isNanBody: string): string {
  let out = code;
  for (const [name, body] of [["poison_score", poisonBody], ["is_nan", isNanBody]]) {
    const re = new RegExp(`fn ${name}\\(x: f32\\) -> bool \\{[^}]*\\}`);
    if (!re.test(out)) throw new Error(`hoist_loads: no ${name} in the kernel`);
    out = out.replace(re, `fn ${name}(x: f32) -> bool {\n${body}\n}`);
  }
  return out;
}

/** The kernel with its NaN/+∞ tests always false. */
export function noPoison(code: string): string {
  return withNanTests(code, "  return false;", "  return false;");
}

/** The kernel with the NaN/+∞ bit tests' constants as literals (the form before session 11). */
export function literalPoison(code: string): string {
  return withNanTests(
    code,
    "  let b = bitcast<u32>(x);\n  return (b & 0x7fffffffu) >= 0x7f800000u && b != 0xff800000u;",
    "  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;",
  );
}

/**
 * The kernel with the NaN/+∞ bit tests' constants taken from the metadata's −∞ word
 * (`META.negInfBits`, 0xff800000) at run time, so the compiler cannot recognise the tests as
 * float class checks.
 */
export function opaquePoison(code: string): string {
  const ni = `mt[${META.negInfBits}]`;
  return withNanTests(
    code,
    `  let b = bitcast<u32>(x);\n  return (b & 0x7fffffffu) >= (${ni} & 0x7fffffffu) && b != ${ni};`,
    `  return (bitcast<u32>(x) & 0x7fffffffu) > (${ni} & 0x7fffffffu);`,
  );
}

/** The kernel with −∞ (read from the metadata) replaced by −3e38, still a runtime value. */
export function finite(code: string): string {
  const from = `let ninf = bitcast<f32>(mt[${META.negInfBits}]);`;
  if (!code.includes(from)) throw new Error("hoist_loads: no `let ninf` in the kernel");
  return code.replace(from, `let ninf = select(-3.0e38, 0.0, mt[${META.negInfBits}] == 0u);`);
}

/** The hoisted registers (`decls`) as elements of two arrays, hk (K/V) and hq (q). */
function toArrays(code: string, decls: string[], kT: string): string {
  const names = decls.map((d) => /var (\w+):/.exec(d)![1]);
  const kvN = names.filter((n) => !n.startsWith("q"));
  const qN = names.filter((n) => n.startsWith("q"));
  let out = code.split("\n").filter((l) => !decls.includes(l)).join("\n");
  const arrays = [
    ...(kvN.length ? [`  var hk: array<${kT}, ${kvN.length}>;`] : []),
    ...(qN.length ? [`  var hq: array<vec4<f32>, ${qN.length}>;`] : []),
  ];
  for (const [arr, list] of [["hk", kvN], ["hq", qN]] as const) {
    list.forEach((n, i) => out = out.replace(new RegExp(`\\b${n}\\b`, "g"), `${arr}[${i}]`));
  }
  const at = out.indexOf("\n  let segA = ");
  if (at < 0) throw new Error("hoist_loads: no `let segA` in the kernel");
  return out.slice(0, at + 1) + arrays.join("\n") + "\n" + out.slice(at + 1);
}
