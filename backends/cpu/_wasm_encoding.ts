/**
 * Encoding of WebAssembly bytes for the CPU attention's SIMD module (`_attention_simd.ts`):
 * LEB128, the opcodes the kernels use, structured loops and function bodies. Emitting the
 * bytes here needs no toolchain.
 *
 * @module
 */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

export type Code = number[];
export const get = (i: number): Code => [0x20, ...uleb(i)];
export const set = (i: number): Code => [0x21, ...uleb(i)];
export const i32c = (n: number): Code => [0x41, ...sleb(n)];
export const simd = (op: number): Code => [0xfd, ...uleb(op)];
export const I32_ADD = [0x6a], I32_SUB = [0x6b], I32_MUL = [0x6c], I32_LT_S = [0x48];
export const I32_EQZ = [0x45], I32_EQ = [0x46], I32_AND = [0x71];
export const I32_CLZ = [0x67], I32_SHL = [0x74];
export const v128Load = (offset = 0): Code => [...simd(0x00), 3, ...uleb(offset)];
export const v128Store = (offset = 0): Code => [...simd(0x0b), 3, ...uleb(offset)];
export const load16x4S = (offset = 0): Code => [...simd(0x03), 1, ...uleb(offset)];
export const load32SplatAt = (offset = 0): Code => [...simd(0x09), 2, ...uleb(offset)];
export const load32Splat = load32SplatAt(0);
export const load64Splat = [...simd(0x0a), 3, 0];
export const F64X2_ADD = simd(0xf0), F64X2_MUL = simd(0xf2), PROMOTE_LOW = simd(0x5f);
/** `stack: a a` → lanes 2, 3 of a in lanes 0, 1 (i8x16.shuffle). */
export const HIGH_HALF = [
  ...simd(0x0d),
  8,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
  8,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
];
export const i32Load = [0x28, 2, 0];
export const f32Store = (offset = 0): Code => [0x38, 2, ...uleb(offset)];
export const V_AND = simd(0x4e), V_ANDNOT = simd(0x4f), V_OR = simd(0x50), V_BITSELECT = simd(0x52);
export const I32X4_SHL = simd(0xab), I32X4_ADD = simd(0xae), I32X4_LT_S = simd(0x39);
export const I32X4_SPLAT = simd(0x11);
export const F32X4_ADD = simd(0xe4), F32X4_SUB = simd(0xe5), F32X4_MUL = simd(0xe6);
export const F32X4_ABS = simd(0xe0),
  F32X4_MAX = simd(0xe9),
  F32X4_GE = simd(0x46),
  F32X4_LT = simd(0x43);
export const F32X4_NEAREST = simd(0x6a), TRUNC_SAT_F32X4_S = simd(0xf8);
export const I16X8_MAX_U = simd(0x99), I16X8_GT_U = simd(0x32), V_ANY_TRUE = simd(0x53);
export const I32X4_EXTEND_LOW_I16X8_S = simd(0xa7), I32X4_EXTEND_HIGH_I16X8_S = simd(0xa8);
/** `stack: a` → `a · local` as float32x4. */
export const F32X4_MUL_BY = (local: number): Code => [...get(local), ...F32X4_MUL];
export const RELAXED_MADD = simd(0x105); // f32x4.relaxed_madd
/** `stack: a b` → `a · b + acc` (pushes acc itself). */
export type Madd = (acc: number) => Code;
export const extractF32 = (lane: number): Code => [...simd(0x1f), lane];
export const F32_ADD = [0x92];
/** f32.max: NaN if either is NaN, +0 over −0. */
export const F32_MAX = [0x97];
export const i32x4Const = (x: number): Code => {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setInt32(0, x, true);
  b.copyWithin(4, 0, 4);
  b.copyWithin(8, 0, 8);
  return [...simd(0x0c), ...b];
};
export const V_ZERO = i32x4Const(0);
/** v128.const i32x4 0, 1, 2, 3: each lane's index. */
export const LANE_INDICES: Code = [
  ...simd(0x0c),
  ...new Uint8Array(new Int32Array([0, 1, 2, 3]).buffer),
];
/** `stack:` the mask of the lanes whose index is below `n − j` (i32 locals): a row's tail. */
export const lanesBelow = (lanes: number, n: number, j: number): Code => [
  ...get(lanes),
  ...get(n),
  ...get(j),
  ...I32_SUB,
  ...I32X4_SPLAT,
  ...I32X4_LT_S,
];
/** `stack:` the address of 4-byte element `i` (i32 local) of the array at `base` (i32 local). */
export const wordAt = (base: number, i: number): Code => [
  ...get(base),
  ...get(i),
  ...i32c(4),
  ...I32_MUL,
  ...I32_ADD,
];
export const f32x4Const = (x: number): Code => {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < 4; i++) dv.setFloat32(4 * i, x, true);
  return [...simd(0x0c), ...b];
};

/** `while (cond) body` as block/loop with the test at both ends. */
export function whileLoop(cond: Code, body: Code): Code {
  return [
    0x02,
    0x40,
    ...cond,
    ...I32_EQZ,
    0x0d,
    0x00,
    0x03,
    0x40,
    ...body,
    ...cond,
    0x0d,
    0x00,
    0x0b,
    0x0b,
  ];
}

export const addTo = (local: number, amount: Code): Code => [
  ...get(local),
  ...amount,
  ...I32_ADD,
  ...set(local),
];

/** One function body: locals by type (i32, v128) after the params. */
export function body(i32s: number, v128s: number, code: Code): Code {
  return bodyWith([[i32s, 0x7f], [v128s, 0x7b]], code);
}

/** One function body with locals in groups of (count, type) after the params. */
export function bodyWith(groups: [number, number][], code: Code): Code {
  const decl = [groups.length, ...groups.flatMap(([n, t]) => [...uleb(n), t])];
  const b = [...decl, ...code, 0x0b];
  return [...uleb(b.length), ...b];
}

/**
 * `base + scale(r + dr)`: the address of row `r + dr`; `scale` is the code that turns a row
 * index into bytes.
 */
export const rowAddr = (base: number, r: number, dr: number, scale: Code): Code => [
  ...get(base),
  ...get(r),
  ...i32c(dr),
  ...I32_ADD,
  ...scale,
  ...I32_ADD,
];

/** `stack: v` (f32x4) → `(v0 + v1) + (v2 + v3)` as f32: the fixed order of every lane sum. */
export const hsumF32 = (v: number): Code => [
  ...get(v),
  ...extractF32(0),
  ...get(v),
  ...extractF32(1),
  ...F32_ADD,
  ...get(v),
  ...extractF32(2),
  ...get(v),
  ...extractF32(3),
  ...F32_ADD,
  ...F32_ADD,
];

/**
 * An import entry of a memory `mod.field`: unshared with no bounds (any memory matches), or
 * shared with WebAssembly's largest maximum (65536 pages).
 */
export function memoryImport(mod: string, field: string, shared: boolean): Code {
  const limits = shared ? [0x03, ...uleb(0), ...uleb(65536)] : [0x00, ...uleb(0)];
  return [...name(mod), ...name(field), 0x02, ...limits];
}

/** A module's bytes: the magic number and version 1, then the sections in order. */
export function wasmModule(...sections: Code[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...sections.flat()]);
}

export function section(id: number, content: Code): Code {
  return [id, ...uleb(content.length), ...content];
}

export function name(s: string): Code {
  const b = new TextEncoder().encode(s);
  return [...uleb(b.length), ...b];
}
