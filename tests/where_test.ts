/**
 * The `where` primitive: elementwise selection with NumPy broadcasting, scalar operands rounded
 * to the tensor dtype, a 0-d result; NaN and ±∞ in the unselected operand never leak (a NaN
 * condition counts as true). Bad operands: tests/bad_input_ops_test.ts.
 */
import { ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { where } from "../ops/where.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { broadcastIndex, sameIeee } from "./_assert.ts";

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
          // Rounded first: a finite value beyond float16 (1e30) is refused by tensor(), so
          // its overflow to ∞ is made explicit here.
          const c = tensor(cv.map(round), { shape: cs, dtype, backend });
          const a = tensor(av.map(round), { shape: as, dtype, backend });
          const b = tensor(bv.map(round), { shape: bs, dtype, backend });
          const r = where(c, a, b);
          assert(r.shape.length === out.length && r.shape.every((d, i) => d === out[i]));
          assert(r.dtype === dtype);
          const got = await r.data();
          for (let o = 0; o < size(out); o++) {
            const cond = round(cv[broadcastIndex(cs, out, o)]);
            const want = round(
              cond !== 0 ? av[broadcastIndex(as, out, o)] : bv[broadcastIndex(bs, out, o)],
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
