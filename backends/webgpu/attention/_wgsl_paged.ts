/**
 * WGSL pieces of paged K/V (VARIANTS.md, "Paged KV"; `PagedLayout`): the three main kernels
 * address key `j` of unit (b, h) through the block table instead of `kvRow0 + j`, and with
 * several page buffers load through a function that picks the buffer. Only addresses change:
 * a paged kernel does exactly the contiguous kernel's arithmetic, so with the same
 * configuration it gives the same bits.
 *
 * The page size and the buffer count are compile-time constants of the pipeline (a division
 * by a constant is a shift or a multiply). With several buffers the buffer index rides in the
 * top bits of the load index (`x >> 28` the buffer, `x & 0x0fffffff` the index in it), so the
 * kernels' index arithmetic (`+ lane`, `+ chunk`) is unchanged; a buffer then holds at most
 * 2²⁸ load units ({@link checkPagedLaunch}). With one buffer the lookup is the only change.
 *
 * @module
 */
import type { PagedLayout } from "../../../schedule/attention_plan.ts";
import type { GpuContext } from "../context.ts";
import { LimitError } from "../../../tensor/errors.ts";

/** What a paged kernel is compiled for (part of its configuration and key). */
export interface PagedKernel {
  /** Tokens per page. */
  readonly ps: number;
  /** Page buffers (K and V each). */
  readonly nb: number;
  /** Pages per buffer (read only with several buffers). */
  readonly ppb: number;
}

/** Bits of a load index that address within one page buffer (the rest pick the buffer). */
const INDEX_BITS = 28; // the mask in `ld<K|V>` is 0x0fffffff

/** The kernel's paged configuration of a layout. */
export function pagedKernel(layout: PagedLayout): PagedKernel {
  return {
    ps: layout.pageSize,
    nb: layout.buffers,
    ppb: layout.buffers > 1 ? layout.pagesPerBuffer : 0,
  };
}

/** Pipeline key suffix (empty when not paged). */
export function pagedKey(pg: PagedKernel | null | undefined): string {
  if (!pg) return "";
  return `:pg${pg.ps}x${pg.nb}${pg.nb > 1 ? `p${pg.ppb}` : ""}`;
}

/** Storage bindings a paged kernel adds: the block table and the other buffers' K and V. */
export function pagedBindingCount(pg: PagedKernel | null | undefined): number {
  return pg ? 1 + 2 * (pg.nb - 1) : 0;
}

/**
 * Throws {@link LimitError} where a paged launch cannot address its page buffers: more than
 * 2^(32 − 28) buffers, or a buffer of more than 2²⁸ load units of `unitElems` elements.
 */
export function checkPagedLaunch(pg: PagedKernel, Hkv: number, D: number, unitElems: number): void {
  if (pg.nb === 1) return;
  const maxBuffers = 2 ** (32 - INDEX_BITS);
  if (pg.nb > maxBuffers) {
    throw new LimitError(
      `webgpu attention: paged K/V in ${pg.nb} page buffers, at most ${maxBuffers} are supported`,
    );
  }
  const units = (pg.ppb * Hkv * pg.ps * D) / unitElems;
  if (units > 2 ** INDEX_BITS) {
    throw new LimitError(
      `webgpu attention: a page buffer of ${pg.ppb} pages holds ${units} loads of ${unitElems} ` +
        `elements, over the ${2 ** INDEX_BITS} a paged kernel addresses in one buffer when ` +
        `K/V span several (use fewer pages a buffer)`,
    );
  }
}

/**
 * Throws {@link LimitError} where the kernel's `own` bindings, the variant's and the paged
 * ones exceed the device's storage buffers per shader stage.
 */
export function checkPagedBindings(ctx: GpuContext, own: number, pg: PagedKernel): void {
  const max = ctx.limits.maxStorageBuffersPerShaderStage;
  const need = own + pagedBindingCount(pg);
  if (need > max) {
    throw new LimitError(
      `webgpu attention: paged K/V in ${pg.nb} page buffers bind ${need} storage buffers ` +
        `(the block table and ${pg.nb} K and V buffers besides the kernel's own), the device ` +
        `allows ${max} (maxStorageBuffersPerShaderStage); use fewer, larger page buffers`,
    );
  }
}

/**
 * WGSL of the paged bindings from binding `first` on (the block table `BT`, then K1…, V1…)
 * and of `kv_at(pbt, Hkv, h, key)`: the load index of key `key`'s row of kv head `h` times
 * `mul` (load units a row), with the buffer in the top bits when there are several.
 */
export function pagedBindings(
  pg: PagedKernel | null | undefined,
  first: number,
  ldT: string,
  mul: number,
): string {
  if (!pg) return "";
  const nb = pg.nb;
  const out = [`@group(0) @binding(${first}) var<storage, read> BT: array<i32>;`];
  let i = first + 1;
  for (const t of ["K", "V"]) {
    for (let c = 1; c < nb; c++) {
      out.push(`@group(0) @binding(${i++}) var<storage, read> ${t}${c}: array<${ldT}>;`);
    }
  }
  out.push(rowFunction("kv_at", pg, mul));
  if (nb > 1) { for (const t of ["K", "V"]) out.push(bufferPicker(t, nb, ldT)); }
  return "\n" + out.join("\n");
}

/**
 * WGSL of function `name(pbt, Hkv, h, key)`: the index of key `key`'s row of kv head `h` in
 * its page buffer times `mul`, with the buffer in the top bits when there are several.
 */
export function rowFunction(name: string, pg: PagedKernel, mul: number): string {
  const { ps, nb, ppb } = pg;
  // A multiplier of 1 is left out (the scales' index); the rows' text is unchanged.
  const times = (x: string) => mul === 1 ? x : `(${x}) * ${mul}u`;
  const row = nb > 1
    ? `  let c = page / ${ppb}u;
  return (c << ${INDEX_BITS}u) + ${
      times(`((page - c * ${ppb}u) * Hkv + h) * ${ps}u + key % ${ps}u`)
    };`
    : `  return ${times(`(page * Hkv + h) * ${ps}u + key % ${ps}u`)};`;
  return `fn ${name}(pbt: u32, Hkv: u32, h: u32, key: u32) -> u32 {
  let page = u32(BT[pbt + key / ${ps}u]);
${row}
}`;
}

/**
 * WGSL of `ld${t}(x)`: element `x & 0x0fffffff` of buffer `t` + `x >> 28` (`t`, `t1`, … of
 * element type `elT`).
 */
export function bufferPicker(t: string, nb: number, elT: string): string {
  // A binary tree of two-way choices, not a switch: on an H100 a switch over 4 or 8 buffers
  // cost paged lean 10 and 24 % against 2 (bench/NOTES.md, "Session 2026-12-06 (3)").
  const name = (c: number) => (c === 0 ? t : `${t}${c}`);
  const pick = (lo: number, hi: number, ind: string): string => {
    if (hi - lo === 1) return `${ind}return ${name(lo)}[i];`;
    const mid = (lo + hi) >> 1;
    return `${ind}if (c < ${mid}u) {\n${pick(lo, mid, ind + "  ")}\n${ind}}\n${pick(mid, hi, ind)}`;
  };
  return `fn ld${t}(x: u32) -> ${elT} {
  let i = x & 0x0fffffffu;
  let c = x >> ${INDEX_BITS}u;
${pick(0, nb, "  ")}
}`;
}

/** WGSL of the per-segment line a paged kernel adds: the sequence's block-table row. */
export function pagedSegment(pg: PagedKernel | null | undefined, indent: string): string {
  return pg ? `\n${indent}let pbt = b * (N / ${pg.ps}u);` : "";
}

/**
 * WGSL of the load index of key `key`'s row times `mul`: `(kvRow0 + key) * mul` for
 * contiguous K/V (the kernels' original text), through the block table when paged.
 */
export function kvAt(pg: PagedKernel | null | undefined, key: string, mul: number): string {
  return pg ? `kv_at(pbt, Hkv, h, ${key})` : `(kvRow0 + ${key}) * ${mul}u`;
}

/** WGSL loading `t` ("K" or "V") at load index `x` (through the buffer picker when several). */
/**
 * WGSL lines (at `ind`) of loads that share one base index `x` (a key's K and V rows): `dst =
 * T[x + off]` each; with several page buffers one choice of buffer for all of them (the tree
 * of {@link bufferPicker} once, every load of the key in each leaf), not one per load.
 * `tag` makes the lines' own names unique.
 */
export function keyLoads(
  pg: PagedKernel | null | undefined,
  x: string,
  loads: readonly { dst: string; t: "K" | "V"; off: string }[],
  ind: string,
  tag: string,
): string[] {
  if (!pg || pg.nb === 1) return loads.map((l) => `${ind}${l.dst} = ${l.t}[${x} + ${l.off}];`);
  const out = [
    `${ind}let pc${tag} = (${x}) >> ${INDEX_BITS}u;`,
    `${ind}let pi${tag} = (${x}) & 0x0fffffffu;`,
  ];
  const name = (t: string, c: number) => (c === 0 ? t : `${t}${c}`);
  const pick = (lo: number, hi: number, at: string) => {
    if (hi - lo === 1) {
      for (const l of loads) out.push(`${at}${l.dst} = ${name(l.t, lo)}[pi${tag} + ${l.off}];`);
      return;
    }
    const mid = (lo + hi) >> 1;
    out.push(`${at}if (pc${tag} < ${mid}u) {`);
    pick(lo, mid, at + "  ");
    out.push(`${at}} else {`);
    pick(mid, hi, at + "  ");
    out.push(`${at}}`);
  };
  pick(0, pg.nb, ind);
  return out;
}

export function kvLoad(pg: PagedKernel | null | undefined, t: "K" | "V", x: string): string {
  return pg && pg.nb > 1 ? `ld${t}(${x})` : `${t}[${x}]`;
}
