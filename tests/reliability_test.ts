/**
 * Reliability: the `where` primitive, bad input (named error, expected vs given, nothing
 * written, nothing leaked), non-finite and extreme values against the float64 reference for
 * every algorithm and backend, and device loss.
 *
 * The reference's semantics of non-finite inputs (tests/_reference.ts), which every algorithm
 * must reproduce: a row reads exactly its visible keys (j < kvLens[b], and j < len − Sq + i + 1
 * under the causal mask) and computes `s_j = scale·q·k_j`, `m = max s_j`, `w_j = exp(s_j − m)`,
 * `out = Σ w_j v_j / Σ w_j`, `lse = m + ln Σ w_j` in IEEE arithmetic. Consequences: a NaN in
 * q or in a visible key row makes that row's out and lse NaN (through m); a +∞ score gives
 * `∞ − ∞ = NaN`, so also NaN; a −∞ score is a key with weight 0; a NaN or ±∞ in a visible
 * value row makes only the matching output column non-finite (`w·∞ = ∞`, `0·∞ = NaN`,
 * `∞ − ∞ = NaN`) and leaves lse alone; anything in a hidden key or value row (beyond kvLens
 * or in the causal future) changes nothing. Rows with no visible key give out 0, lse −∞.
 */
import { ok as assert, throws } from "node:assert/strict";
import fc from "fast-check";
import type { Backend } from "../backends/backend.ts";
import { where } from "../ops/where.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  type LeanattnError,
  ShapeError,
} from "../tensor/errors.ts";
import { describeBackends, numRuns } from "./_backends.ts";

type ErrorClass = new (...args: never[]) => LeanattnError;

/** Asserts `f` throws exactly `cls` with every string of `mentions` in the message. */
function expectError(cls: ErrorClass, f: () => unknown, mentions: string[], what: string): void {
  throws(f, (e: unknown) => {
    assert(e instanceof cls, `${what}: expected ${cls.name}, got ${e}`);
    for (const m of mentions) {
      assert((e as Error).message.includes(m), `${what}: "${(e as Error).message}" lacks "${m}"`);
    }
    return true;
  }, what);
}

/** Equal as IEEE values: NaN matches NaN, ±∞ match exactly, finite within `tol`. */
function sameIeee(got: number, want: number, tol = 0): boolean {
  if (Number.isNaN(want)) return Number.isNaN(got);
  if (!Number.isFinite(want)) return got === want;
  return Number.isFinite(got) && Math.abs(got - want) <= tol;
}

// ---------------------------------------------------------------------------------------------
// where

const special = fc.constantFrom(NaN, Infinity, -Infinity, 0, -0, 1e30, -65504);
const value = fc.oneof(
  { weight: 3, arbitrary: fc.double({ min: -100, max: 100, noNaN: true }) },
  { weight: 1, arbitrary: special },
);
const condValue = fc.oneof(fc.constantFrom(0, -0, NaN, 1, -2.5, Infinity), value);

/** An output shape and three operand shapes that broadcast to it. */
const broadcastCase = fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 4 })
  .chain((out) => {
    const operand = fc.tuple(
      fc.integer({ min: 0, max: out.length }),
      fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
    ).map(([drop, ones]) => out.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d)));
    return fc.tuple(operand, operand, operand).map(([c, a, b]) => {
      // Their broadcast (a dim of `out` may be 1 or absent in all three).
      const r = Math.max(c.length, a.length, b.length);
      const full = Array.from(
        { length: r },
        (_, d) => Math.max(...[c, a, b].map((s) => s[d - (r - s.length)] ?? 1)),
      );
      return [full, c, a, b] as const;
    });
  });

/** Index into `shape` of the element of `out` at flat index `o` (NumPy broadcasting). */
function sourceIndex(shape: readonly number[], out: readonly number[], o: number): number {
  let idx = 0;
  let stride = 1;
  let rem = o;
  for (let d = out.length - 1; d >= 0; d--) {
    const c = rem % out[d];
    rem = Math.floor(rem / out[d]);
    const i = d - (out.length - shape.length);
    if (i >= 0) {
      if (shape[i] !== 1) idx += c * stride;
      stride *= shape[i];
    }
  }
  return idx;
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

describeBackends(
  "where selects a or b elementwise with broadcasting, NaN/∞ never leak",
  async (backend) => {
    await fc.assert(
      fc.asyncProperty(
        broadcastCase,
        fc.constantFrom<DType>("float32", "float16"),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        async ([out, cs, as, bs], dtype, seed) => {
          const gen = (n: number, arb: fc.Arbitrary<number>, s: number) =>
            fc.sample(arb, { numRuns: Math.max(1, n), seed: s }).slice(0, n);
          const cv = gen(size(cs), condValue, seed);
          const av = gen(size(as), value, seed + 1);
          const bv = gen(size(bs), value, seed + 2);
          const round = (x: number) => (dtype === "float16" ? Math.f16round(x) : Math.fround(x));
          const c = tensor(cv, { shape: cs, dtype, backend });
          const a = tensor(av, { shape: as, dtype, backend });
          const b = tensor(bv, { shape: bs, dtype, backend });
          const r = where(c, a, b);
          assert(r.shape.length === out.length && r.shape.every((d, i) => d === out[i]));
          assert(r.dtype === dtype);
          const got = await r.data();
          for (let o = 0; o < size(out); o++) {
            const cond = round(cv[sourceIndex(cs, out, o)]);
            const want = round(
              cond !== 0 ? av[sourceIndex(as, out, o)] : bv[sourceIndex(bs, out, o)],
            );
            assert(
              sameIeee(got[o], want) && Object.is(got[o] === 0 ? got[o] : 0, want === 0 ? want : 0),
              `element ${o}: cond ${cond}, got ${got[o]}, want ${want}`,
            );
          }
          for (const t of [c, a, b, r]) t.dispose();
        },
      ),
      { numRuns: numRuns(backend, 60) },
    );
  },
);

describeBackends("where: scalars, scalar dtype rounding and a 0-d result", async (backend) => {
  const c = tensor([1, 0, NaN, -0], { backend });
  assert(
    (await where(c, tensor([1, 2, 3, 4], { backend }), -Infinity).data()).every((x, i) =>
      Object.is(x, [1, -Infinity, 3, -Infinity][i])
    ),
  );
  const h = where(c, 70000, tensor([1, 2, 3, 4], { dtype: "float16", backend }));
  assert(h.dtype === "float16");
  // 70000 is past the float16 range: as a float16 scalar it is +∞.
  assert((await h.data()).every((x, i) => Object.is(x, [Infinity, 2, Infinity, 4][i])));
  const both = where(tensor(0, { backend }), 1, 2);
  assert(both.shape.length === 0 && both.dtype === "float32");
  assert((await both.data())[0] === 2);
});

describeBackends("where: named errors, and nothing allocated on failure", (backend) => {
  const c = randn([2, 3], { seed: 1, backend });
  const a = randn([4, 3], { seed: 2, backend });
  const h = randn([2, 3], { seed: 3, dtype: "float16", backend });
  const before = backend.memory().liveCount;
  expectError(ShapeError, () => where(c, a, 0), ["[2, 3]", "[4, 3]"], "where broadcast");
  expectError(ShapeError, () => where(c, 0, a), ["[2, 3]", "[4, 3]"], "where broadcast b");
  expectError(DTypeError, () => where(c, c, h), ["float32", "float16"], "where dtypes");
  expectError(ArgumentError, () => where(c, "x" as never, 1), ["a must be", "string"], "where a");
  expectError(ArgumentError, () => where(1 as never, c, c), ["cond must be"], "where cond");
  const twin = new Proxy(backend, {
    get(t, p) {
      if (p === "name") return `${t.name}-twin`;
      const v = Reflect.get(t, p, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  }) as Backend;
  const other = tensor([1, 2, 3], { backend: twin });
  expectError(BackendMismatchError, () => where(c, other, 0), [backend.name], "where backends");
  const gone = randn([2, 3], { seed: 4, backend });
  gone.dispose();
  expectError(DisposedTensorError, () => where(c, gone, 0), ["dispose"], "where disposed");
  other.dispose();
  assert(backend.memory().liveCount === before, "a failed where leaked storage");
  for (const t of [c, a, h]) t.dispose();
});
