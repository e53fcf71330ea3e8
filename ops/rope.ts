/**
 * `rope`: rotary position embedding (RoFormer), a composable op applied to q and k before
 * attention. Angles are formed on the host in float64 (`pos · θ^(−2k/rotaryDim)`) and only
 * their cos/sin are stored as float32 tables — an f32 angle at position 512k would be off by
 * hundredths of a radian — or the caller passes its own `cos`/`sin` tables.
 *
 * @module
 */
import { LimitError, ShapeError, show } from "../tensor/errors.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { readOptions } from "../tensor/options.ts";
import { fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { DataId, TensorInfo } from "../backends/backend.ts";
import { backendOf, live, sameBackend } from "./_util.ts";

/** Options of {@link rope}. */
export interface RopeOptions {
  /**
   * Position of row 0: one number, or one per batch entry (default 0); row `s` sits at
   * `offset + s`. Not with `positions`.
   */
  offset?: number | readonly number[];
  /** Explicit positions: `[S]` for every batch entry, or `[B][S]`. Not with `offset`. */
  positions?: readonly number[] | readonly (readonly number[])[];
  /** Base of the frequencies `θ^(−2k/rotaryDim)` (default 10000). Not with `cos`/`sin`. */
  theta?: number;
  /** GPT-J pairs `(x[2k], x[2k+1])` (default false: GPT-NeoX/Llama pairs `(x[k], x[k+r/2])`). */
  interleaved?: boolean;
  /** Features rotated (even, ≤ D; default D); the rest pass through. */
  rotaryDim?: number;
  /** Precomputed cos table `[maxPos, rotaryDim / 2]` (with `sin`), indexed by position. */
  cos?: Tensor;
  /** Precomputed sin table `[maxPos, rotaryDim / 2]` (with `cos`). */
  sin?: Tensor;
}

const OP = "rope";
const KNOWN = ["offset", "positions", "theta", "interleaved", "rotaryDim", "cos", "sin"];
/** Positions travel as float32: integers up to 2^24 are exact. */
const MAX_POSITION = 2 ** 24;

/**
 * Rotates pairs of features of x `[B, H, S, D]` by their row's position (same shape and
 * dtype out). See {@link RopeOptions} for the conventions.
 *
 * @example
 * ```ts
 * import { rope, tensor } from "../mod.ts";
 * // One feature pair at positions 0 and 1 (θ irrelevant for pair 0: frequency 1).
 * const x = tensor([1, 0, 1, 0], { shape: [1, 1, 2, 2] });
 * const y = await rope(x).data();
 * console.log(Array.from(y, (v) => +v.toFixed(4))); // [1, 0, 0.5403, 0.8415]
 * ```
 */
export function rope(x: Tensor, options: RopeOptions = {}): Tensor {
  const t = live(OP, "x", x);
  const o = readOptions<RopeOptions>(OP, options, KNOWN);
  if (t.rank !== 4) {
    throw new ShapeError(`${OP}: x must have rank 4 ([B, H, S, D]), got ${fmt(t.shape)}`);
  }
  const [B, , S, D] = t.shape;
  const rd = o.rotaryDim ?? D;
  if (!Number.isSafeInteger(rd) || rd < 2 || rd % 2 !== 0 || rd > D) {
    throw new ArgumentError(
      `${OP}: rotaryDim must be an even integer in [2, D = ${D}], got ${show(o.rotaryDim)}`,
    );
  }
  const interleaved = flag("interleaved", o.interleaved);
  const pos = positionsOf(o, B, S);
  const backend = backendOf(OP, t);
  const half = rd / 2;
  const info = (u: Tensor): TensorInfo => ({ id: u.id, shape: u.shape, dtype: u.dtype });
  let cos: TensorInfo;
  let sin: TensorInfo;
  const temps: DataId[] = [];
  try {
    let rows: Float32Array;
    if (o.cos !== undefined || o.sin !== undefined) {
      if (o.theta !== undefined) {
        throw new ArgumentError(`${OP}: give theta or cos/sin tables, not both`);
      }
      const ct = table("cos", o.cos, half);
      const st = table("sin", o.sin, half);
      sameBackend(OP, t, ct, st);
      if (ct.shape[0] !== st.shape[0]) {
        throw new ShapeError(
          `${OP}: cos ${fmt(ct.shape)} and sin ${fmt(st.shape)} must have one shape`,
        );
      }
      [cos, sin] = [info(ct), info(st)];
      const maxPos = ct.shape[0];
      pos.values.forEach((p) => {
        if (p >= maxPos) {
          throw new ArgumentError(
            `${OP}: position ${p} is past the ${maxPos} rows of the cos/sin tables`,
          );
        }
      });
      rows = Float32Array.from(pos.values);
    } else {
      const theta = o.theta ?? 10000;
      if (typeof theta !== "number" || !Number.isFinite(theta) || theta <= 0) {
        throw new ArgumentError(`${OP}: theta must be a positive number, got ${show(theta)}`);
      }
      // One table row a distinct (batch, row) position list: rows[b·S + s] = its index.
      const uniq = pos.shared ? pos.values.slice(0, S) : pos.values;
      const c = new Float32Array(uniq.length * half);
      const s = new Float32Array(uniq.length * half);
      for (let r = 0; r < uniq.length; r++) {
        for (let k = 0; k < half; k++) {
          const angle = uniq[r] * Math.pow(theta, (-2 * k) / rd);
          c[r * half + k] = Math.cos(angle);
          s[r * half + k] = Math.sin(angle);
        }
      }
      const tables = [c, s].map((v) => backend.upload(v, "float32", [uniq.length, half]));
      temps.push(...tables);
      [cos, sin] = tables.map((id) => ({ id, shape: [uniq.length, half], dtype: "float32" }));
      rows = Float32Array.from({ length: B * S }, (_, i) => (pos.shared ? i % S : i));
    }
    const rowsId = backend.upload(rows, "float32", [B, S]);
    temps.push(rowsId);
    const id = backend.rope(
      info(t),
      cos,
      sin,
      { id: rowsId, shape: [B, S], dtype: "float32" },
      rd,
      interleaved,
    );
    return new Tensor(t.backend, id, t.shape, t.dtype);
  } finally {
    for (const id of temps) backend.release(id);
  }
}

function flag(name: string, v: unknown): boolean {
  if (v !== undefined && typeof v !== "boolean") {
    throw new ArgumentError(`${OP}: ${name} must be a boolean, got ${show(v)}`);
  }
  return v ?? false;
}

/** A float32 `[maxPos, half]` table tensor, checked. */
function table(name: string, v: unknown, half: number): Tensor {
  if (v === undefined) {
    throw new ArgumentError(`${OP}: give both cos and sin tables (${name} is missing)`);
  }
  const t = live(OP, name, v);
  if (t.rank !== 2 || t.shape[1] !== half || t.shape[0] < 1) {
    throw new ShapeError(
      `${OP}: ${name} must be [maxPos, rotaryDim / 2 = ${half}], got ${fmt(t.shape)}`,
    );
  }
  if (t.dtype !== "float32") {
    throw new ArgumentError(`${OP}: ${name} must be float32 (cast it), got ${t.dtype}`);
  }
  return t;
}

/** Every row's position, `[B·S]` in row order; `shared` when all batch entries agree. */
function positionsOf(
  o: Partial<RopeOptions>,
  B: number,
  S: number,
): { values: number[]; shared: boolean } {
  const check = (p: unknown, where: string): number => {
    if (typeof p !== "number" || !Number.isSafeInteger(p) || p < 0) {
      throw new ArgumentError(`${OP}: ${where} must be a non-negative integer, got ${show(p)}`);
    }
    if (p + S > MAX_POSITION) {
      throw new LimitError(`${OP}: ${where} ${p} puts positions past 2^24 (float32-exact)`);
    }
    return p;
  };
  if (o.positions !== undefined) {
    if (o.offset !== undefined) {
      throw new ArgumentError(`${OP}: give offset or positions, not both`);
    }
    const p = o.positions;
    if (!Array.isArray(p)) {
      throw new ArgumentError(`${OP}: positions must be [S] or [B][S] numbers, got ${show(p)}`);
    }
    if (p.length === S && p.every((e) => typeof e === "number")) {
      const row = (p as number[]).map((e, s) => check(e, `positions[${s}]`));
      return { values: Array.from({ length: B }, () => row).flat(), shared: true };
    }
    if (p.length !== B || !p.every((r) => Array.isArray(r) && r.length === S)) {
      throw new ShapeError(
        `${OP}: positions must be [S = ${S}] or [B = ${B}][S = ${S}], got an array of ${p.length}`,
      );
    }
    const values = (p as number[][]).flatMap((r, b) =>
      r.map((e, s) => check(e, `positions[${b}][${s}]`))
    );
    return { values, shared: false };
  }
  const off = o.offset ?? 0;
  if (Array.isArray(off)) {
    if (off.length !== B) {
      throw new ArgumentError(`${OP}: offset must have ${B} entries (one a batch entry)`);
    }
    const values = off.flatMap((v, b) => {
      const base = check(v, `offset[${b}]`);
      return Array.from({ length: S }, (_, s) => base + s);
    });
    return { values, shared: false };
  }
  const base = check(off, "offset");
  const row = Array.from({ length: S }, (_, s) => base + s);
  return { values: Array.from({ length: B }, () => row).flat(), shared: true };
}
