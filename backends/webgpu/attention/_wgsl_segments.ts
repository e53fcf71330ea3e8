/**
 * What the three main attention kernels (subgroup, workgroup-memory, generic) share around a
 * segment: one binding layout, so the executor binds them alike, and the end of a segment —
 * the merged state written as output rows or as a partial state.
 *
 * @module
 */
import type { Elem } from "./_wgsl_meta.ts";
import { sinkFold } from "./_wgsl_variant.ts";

/**
 * Bindings of the three main kernels (one layout, so the executor binds them alike): meta,
 * q, K, V (`kvT`: the storage element or the wide load type), out, lse, partial states —
 * as f32, or as u32 words accessed only atomically where workgroups of the same dispatch
 * read each other's partials (`atomicPart`, the in-kernel merge; see {@link partStore}).
 */
export function mainBindings(q: Elem, kvT: string, atomicPart = false): string {
  return `@group(0) @binding(0) var<storage, read> mt: array<u32>;
@group(0) @binding(1) var<storage, read> Q: array<${q}>;
@group(0) @binding(2) var<storage, read> K: array<${kvT}>;
@group(0) @binding(3) var<storage, read> V: array<${kvT}>;
@group(0) @binding(4) var<storage, read_write> O: array<${q}>;
@group(0) @binding(5) var<storage, read_write> LSE: array<f32>;
@group(0) @binding(6) var<storage, read_write> PART: ${
    atomicPart ? "array<atomic<u32>>" : "array<f32>"
  };`;
}

/**
 * WGSL storing f32 `v` at partial word `i`. With `atomic` the store is an `atomicStore` of its
 * bits: the in-kernel merge reads partials another workgroup of the same dispatch wrote, and
 * plain loads may be served by the reading multiprocessor's L1, which is not coherent with
 * other multiprocessors' stores (WGSL orders non-atomic accesses only within a workgroup).
 * Atomic accesses go to L2.
 */
export function partStore(i: string, v: string, atomic: boolean): string {
  return atomic ? `atomicStore(&PART[${i}], bitcast<u32>(${v}));` : `PART[${i}] = ${v};`;
}

/** WGSL loading partial word `i` as f32 (atomically with `atomic`, see {@link partStore}). */
export function partLoad(i: string, atomic: boolean): string {
  return atomic ? `bitcast<f32>(atomicLoad(&PART[${i}]))` : `PART[${i}]`;
}

/**
 * WGSL storing the thread's row element (row `fr`, dims `4·fj…`) of state `(m, l, o)` in
 * partial slot `slot` (WGSL expressions; l stored as NaN where `bad`): the one layout of a
 * partial state, (m, l) at word `2·(slot·R + fr)`, the outputs at `partOOff + D·(slot·R + fr)`.
 */
export function stateStores(
  D: number,
  slot: string,
  m: string,
  l: string,
  o: string,
  bad: string,
  atomic: boolean,
): string[] {
  const st = (i: string, v: string) => partStore(i, v, atomic);
  return [
    `let pr = (${slot}) * R + fr;`,
    `let ob = partOOff + pr * ${D}u + fj * 4u;`,
    ...["x", "y", "z", "w"].map((c, i) => st(`ob + ${i}u`, `${o}.${c}`)),
    `if (fj == 0u) {`,
    `  ${st("pr * 2u", m)}`,
    `  ${st("pr * 2u + 1u", `select(${l}, qnan, ${bad})`)}`,
    `}`,
  ];
}

/** The end of a segment: row `fr`, dims `4·fj…` of the merged state `(M, Lt, acc)` go to the
 * output (normalised, with the lse) or to the segment's partial slot. */
export function writeOut(D: number, q: Elem, atomicPart = false, sinks = false): string {
  const partial = stateStores(D, "part", "M", "Lt", "acc", "rbad", atomicPart)
    .map((x) => `          ${x}`).join("\n");
  // With sinks a row written whole merges its head's sink state here, once (a partial state
  // never holds it: the merge of the pieces adds it).
  const norm = sinks
    ? `${sinkFold("h * group + fr / rpb", "M", "Lt", "          ").join("\n")}
          let inv = az / lz;
          let y = select(acc * inv, vec4<f32>(qnan), rbad);`
    : `          let inv = select(0.0, 1.0 / Lt, Lt != 0.0);
          let y = select(acc * inv, vec4<f32>(qnan), rbad);`;
  const lse = sinks
    ? "select(mz + log(lz * pun), qnan, rbad)"
    : "select(select(ninf, M + log(Lt * pun), Lt != 0.0), qnan, rbad)";
  return `    if (act) {
      let i = qb * rpb + fr % rpb;
      if (i < Sq) {
        let row = (b * Hq + h * group + fr / rpb) * Sq + i;
        if (part == 0xffffffffu) {
${norm}
          let ob = row * ${D}u + fj * 4u;
          O[ob] = ${q}(y.x);
          O[ob + 1u] = ${q}(y.y);
          O[ob + 2u] = ${q}(y.z);
          O[ob + 3u] = ${q}(y.w);
          if (fj == 0u) { LSE[row] = ${lse}; }
        } else {
${partial}
        }
      }
    }
`;
}
