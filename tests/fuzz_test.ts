/**
 * Fuzzing the public attention API: random shapes (mostly near-valid, some broken), random
 * dtypes, tensors from another backend or disposed, and option objects full of garbage
 * (wrong types, NaN, ±∞, −0, huge and fractional numbers, symbols, unknown keys). Every call
 * either throws a `LeanattnError` or returns a result that matches the float64 reference —
 * never a TypeError/RangeError, never a wrong answer. The same for `mergeAttentionStates` and
 * `where`.
 * Nothing may leak: after each case the backend holds exactly what it held before.
 */
import { ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { type AttentionState, mergeAttentionStates } from "../attention/merge.ts";
import { naiveAttention } from "../attention/naive.ts";
import { where } from "../ops/where.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { LeanattnError } from "../tensor/errors.ts";
import { normals } from "../tensor/random.ts";
import { Tensor } from "../tensor/tensor.ts";
import { referenceAttention } from "../testing/reference.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { compareIeee } from "./regress/cases.ts";
import { broadcastIndex, twinOf } from "./_assert.ts";

/** Values of the wrong kind for any option or argument. */
const junk = fc.oneof(
  fc.constantFrom(undefined, null, true, false, "", "auto", "8", [], {}, [1, 2], Symbol("s")),
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, -1, 0.5, 2 ** 31, 2 ** 53, 1e300),
  fc.constant(10n),
  fc.constant(() => 1),
  fc.string({ maxLength: 3 }),
);

/** Numbers that are sometimes fine and sometimes not. */
const count = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 70 }) },
  { weight: 1, arbitrary: fc.integer({ min: -3, max: 0 }) },
  { weight: 1, arbitrary: fc.double({ noDefaultInfinity: false }) },
  { weight: 1, arbitrary: junk },
);

/** `undefined` most of the time, else a draw of `a`. */
const rarely = <T>(a: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });

const OPTION_KEYS = [
  "scale",
  "causal",
  "kvLens",
  "returnLse",
  "blockN",
  "numSplits",
  "tileSize",
  "grid",
  "unknownKey",
] as const;

/**
 * Options: valid values (kvLens as fractions of N, resolved per case), then possibly one or
 * two keys overwritten with garbage — or no object at all.
 */
const options = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      valid: fc.record(
        {
          scale: fc.double({ min: 0.05, max: 2, noNaN: true }),
          causal: fc.boolean(),
          lens: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 2 }),
          returnLse: fc.boolean(),
          blockN: fc.integer({ min: 1, max: 70 }),
          numSplits: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.constant("auto")),
          tileSize: fc.integer({ min: 1, max: 70 }),
          grid: fc.integer({ min: 1, max: 20 }),
        },
        { requiredKeys: [] },
      ),
      garbage: fc.array(
        fc.tuple(
          fc.constantFrom(...OPTION_KEYS),
          fc.oneof(count, fc.array(count, { maxLength: 3 })),
        ),
        { maxLength: 2 },
      ),
      garbageRate: fc.integer({ min: 0, max: 2 }),
    }),
  },
  { weight: 1, arbitrary: junk },
);

type OptionDraw = typeof options extends fc.Arbitrary<infer T> ? T : never;

/** The knobs each algorithm takes besides the common options (others are an error). */
const KNOBS: Record<(typeof ALGOS)[number], readonly string[]> = {
  naive: [],
  flash: ["blockN", "numSplits"],
  lean: ["tileSize", "grid"],
};

/**
 * The options object a user would pass to `algo`, from a draw, for a batch of `B` and `N`
 * keys: the common options and that algorithm's own knobs (garbage may add any name).
 */
function resolveOptions(
  o: OptionDraw,
  B: number,
  N: number,
  algo: (typeof ALGOS)[number],
): unknown {
  if (o === null || typeof o !== "object" || !("valid" in o)) return o;
  const { lens, blockN, numSplits, tileSize, grid, ...common } = o.valid;
  const knobs: Record<string, unknown> = { blockN, numSplits, tileSize, grid };
  const out: Record<string, unknown> = { ...common };
  for (const name of KNOBS[algo]) if (knobs[name] !== undefined) out[name] = knobs[name];
  if (lens) out.kvLens = Array.from({ length: B }, (_, b) => Math.floor(lens[b % lens.length] * N));
  // Garbage in at most a third of the cases, so valid calls stay common.
  if (o.garbageRate === 0) { for (const [k, v] of o.garbage) out[k] = v; }
  return out;
}

/** Attention shapes, valid or with one dimension of one tensor broken. */
const shapes = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  Hkv: fc.integer({ min: 1, max: 3 }),
  group: fc.integer({ min: 1, max: 3 }),
  Sq: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 63, max: 66 })),
  N: fc.integer({ min: 0, max: 45 }),
  D: fc.integer({ min: 1, max: 8 }),
  breakWhich: rarely(fc.constantFrom("q", "k", "v")),
  breakDim: fc.integer({ min: 0, max: 4 }),
  breakTo: fc.integer({ min: 0, max: 4 }),
  dtypes: fc.tuple(
    fc.constantFrom("float32", "float16"),
    fc.constantFrom("float32", "float16"),
    fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, {
      weight: 1,
      arbitrary: fc.constantFrom("float32", "float16"),
    }),
  ),
  foreign: rarely(fc.constantFrom("q", "k", "v")),
  disposed: rarely(fc.constantFrom("q", "k", "v")),
  notTensor: rarely(fc.tuple(fc.constantFrom("q", "k", "v"), junk)),
  seed: fc.integer({ min: 0, max: 1_000_000 }),
});

type Shapes = typeof shapes extends fc.Arbitrary<infer T> ? T : never;

const ALGOS = ["naive", "flash", "lean"] as const;

function call(algo: (typeof ALGOS)[number], q: unknown, k: unknown, v: unknown, o: unknown) {
  const [a, b, c] = [q, k, v] as Tensor[];
  switch (algo) {
    case "naive":
      return naiveAttention(a, b, c, o as never);
    case "flash":
      return flashAttention(a, b, c, o as never);
    case "lean":
      return leanAttention(a, b, c, o as never);
  }
}

/** Checks a successful call against the reference, reading the options as the API does. */
async function checkResult(
  result: unknown,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: unknown,
): Promise<void> {
  const o = (opts ?? {}) as { scale?: number; causal?: boolean; kvLens?: number[] };
  const lse = (opts as { returnLse?: boolean } | undefined)?.returnLse === true;
  const state = lse ? result as AttentionState : { out: result as Tensor, lse: null };
  assert(state.out instanceof Tensor, `expected a Tensor, got ${String(result)}`);
  const [B, Hq, Sq, D] = q.shape;
  const [, Hkv, N] = k.shape;
  assert(state.out.shape.join() === [B, Hq, Sq, D].join(), `out shape ${state.out.shape}`);
  assert(state.out.dtype === q.dtype, "out dtype");
  const ref = referenceAttention({
    q: await q.data(),
    k: await k.data(),
    v: await v.data(),
    B,
    Hq,
    Hkv,
    Sq,
    N,
    D,
    scale: o.scale,
    causal: o.causal,
    kvLens: o.kvLens,
  });
  let m = 1e-3;
  for (const x of ref.out) m = Math.max(m, Math.abs(x));
  const f16 = q.dtype === "float16" || k.dtype === "float16";
  const tol = m * (f16 ? 2 ** -9 : 2e-5);
  const e = compareIeee(await state.out.data(), ref.out, tol);
  assert(e === null, `out: ${e}`);
  state.out.dispose();
  if (state.lse) {
    assert(state.lse.dtype === "float32" && state.lse.shape.join() === [B, Hq, Sq].join());
    let ml = 1;
    for (const x of ref.lse) if (Number.isFinite(x)) ml = Math.max(ml, Math.abs(x));
    const el = compareIeee(await state.lse.data(), ref.lse, 2e-5 * ml);
    assert(el === null, `lse: ${el}`);
    state.lse.dispose();
  }
}

/** True when `e` is what the API may throw. */
function allowed(e: unknown): boolean {
  return e instanceof LeanattnError;
}

describeBackends(
  "fuzz: attention ops throw only LeanattnError or return the right answer",
  async (backend) => {
    const twin = twinOf(backend);
    let succeeded = 0;
    let failed = 0;
    await fc.assert(
      fc.asyncProperty(
        shapes,
        options,
        fc.constantFrom(...ALGOS),
        async (s: Shapes, drawn, algo) => {
          const opts = resolveOptions(drawn, s.B, s.N, algo);
          const Hq = s.Hkv * s.group;
          const dims: Record<"q" | "k" | "v", number[]> = {
            q: [s.B, Hq, s.Sq, s.D],
            k: [s.B, s.Hkv, s.N, s.D],
            v: [s.B, s.Hkv, s.N, s.D],
          };
          if (s.breakWhich) {
            const d = dims[s.breakWhich];
            if (s.breakDim < 4) d[s.breakDim] = s.breakTo;
            else d.push(s.breakTo); // rank 5
          }
          const before = backend.memory().liveCount;
          const made = (["q", "k", "v"] as const).map((name, i) => {
            const shape = dims[name];
            const size = shape.reduce((a, b) => a * b, 1);
            return tensor(normals(size, s.seed + i), {
              shape,
              // v takes k's dtype unless the draw mixes them.
              dtype: (i === 2 ? s.dtypes[2] ?? s.dtypes[1] : s.dtypes[i]) as DType,
              backend: s.foreign === name ? twin : backend,
            });
          });
          const args: unknown[] = [...made];
          if (s.disposed) made[["q", "k", "v"].indexOf(s.disposed)].dispose();
          if (s.notTensor) args[["q", "k", "v"].indexOf(s.notTensor[0])] = s.notTensor[1];
          let result: unknown;
          try {
            result = call(algo, args[0], args[1], args[2], opts);
          } catch (e) {
            failed++;
            if (Deno.env.get("FUZZ_DEBUG")) console.log(algo, String(e).slice(0, 160));
            assert(allowed(e), `${algo} threw a non-LeanattnError: ${e}`);
            for (const t of made) t.dispose();
            assert(backend.memory().liveCount === before, `${algo}: a failed call leaked storage`);
            return;
          }
          succeeded++;
          await checkResult(result, made[0], made[1], made[2], opts);
          for (const t of made) t.dispose();
          assert(backend.memory().liveCount === before, `${algo}: a call leaked storage`);
        },
      ),
      { numRuns: numRuns(backend, 400) },
    );
    if (Deno.env.get("FUZZ_DEBUG")) console.log({ succeeded, failed });
    // Both outcomes must be exercised, or the property proves little.
    assert(succeeded > 0 && failed > 0, `succeeded ${succeeded}, failed ${failed}`);
  },
);

/** A merge state: random normal out and lse, sometimes with one fault. */
const stateArb = fc.record({
  lead: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 0, maxLength: 3 }),
  // D = 0 has its own named test in merge_test.ts.
  D: fc.integer({ min: 1, max: 5 }),
  fault: rarely(
    fc.oneof(
      fc.constantFrom("outDType", "lseDType", "lseShape", "foreign", "disposed"),
      junk.map((j) => ({ junk: j })),
    ),
  ),
  seed: fc.integer({ min: 0, max: 1_000_000 }),
});

describeBackends(
  "fuzz: mergeAttentionStates throws only LeanattnError or merges correctly",
  async (backend) => {
    const twin = twinOf(backend);
    let succeeded = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 8, arbitrary: fc.array(stateArb, { minLength: 0, maxLength: 4 }) },
          { weight: 1, arbitrary: junk },
        ),
        fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, {
          weight: 1,
          arbitrary: fc.constant(false),
        }),
        fc.constantFrom<DType>("float32", "float16"),
        async (list, sameShape, dtype) => {
          const before = backend.memory().liveCount;
          const made: Tensor[] = [];
          let states: unknown = list;
          if (Array.isArray(list)) {
            const first = list[0];
            states = list.map((s) => {
              if (typeof s !== "object" || s === null || !("lead" in s)) return s; // junk array
              const fault = s.fault;
              if (fault !== undefined && typeof fault === "object") return fault.junk;
              const lead = sameShape && first ? first.lead : s.lead;
              const D = sameShape && first ? first.D : s.D;
              const n = lead.reduce((a: number, b: number) => a * b, 1);
              const flip = (d: DType): DType => (d === "float32" ? "float16" : "float32");
              const out = tensor(normals(n * D, s.seed), {
                shape: [...lead, D],
                dtype: fault === "outDType" ? flip(dtype) : dtype,
                backend: fault === "foreign" ? twin : backend,
              });
              const lseShape: number[] = fault === "lseShape" ? [...lead, 1] : lead;
              const lse = tensor(
                normals(lseShape.reduce((a: number, b: number) => a * b, 1), s.seed + 1),
                { shape: lseShape, dtype: fault === "lseDType" ? "float16" : "float32", backend },
              );
              made.push(out, lse);
              if (fault === "disposed") lse.dispose();
              return { out, lse };
            });
          }
          let r: AttentionState;
          try {
            r = mergeAttentionStates(states as AttentionState[]);
          } catch (e) {
            assert(allowed(e), `merge threw a non-LeanattnError: ${e}`);
            for (const t of made) t.dispose();
            assert(backend.memory().liveCount === before, "a failed merge leaked storage");
            return;
          }
          succeeded++;
          // Reference: the merge in float64 from the stored values.
          const ins = states as AttentionState[];
          const outs = await Promise.all(ins.map((s) => s.out.data()));
          const lses = await Promise.all(ins.map((s) => s.lse.data()));
          const D = ins[0].out.shape[ins[0].out.shape.length - 1];
          const rows = lses[0].length;
          const want = new Float64Array(rows * D);
          const wantLse = new Float64Array(rows);
          for (let i = 0; i < rows; i++) {
            const m = Math.max(...lses.map((l) => l[i]));
            let l = 0;
            for (const x of lses) l += Math.exp(x[i] - m);
            wantLse[i] = m + Math.log(l);
            for (let d = 0; d < D; d++) {
              let acc = 0;
              ins.forEach((_, j) => (acc += Math.exp(lses[j][i] - m) * outs[j][i * D + d]));
              want[i * D + d] = acc / l;
            }
          }
          const f16 = ins[0].out.dtype === "float16";
          const scale = Math.max(1e-3, ...want.map(Math.abs));
          const eo = compareIeee(await r.out.data(), want, scale * (f16 ? 2 ** -10 : 1e-5));
          assert(eo === null, `merged out: ${eo}`);
          const el = compareIeee(await r.lse.data(), wantLse, 1e-5 * Math.max(1, ...wantLse));
          assert(el === null, `merged lse: ${el}`);
          r.out.dispose();
          r.lse.dispose();
          for (const t of made) t.dispose();
          assert(backend.memory().liveCount === before, "a merge leaked storage");
        },
      ),
      { numRuns: numRuns(backend, 300) },
    );
    if (Deno.env.get("FUZZ_DEBUG")) console.log({ succeeded });
    assert(succeeded > 0, "no merge ever succeeded: the property proves little");
  },
);

describeBackends("fuzz: where throws only LeanattnError or selects correctly", async (backend) => {
  const twin = twinOf(backend);
  const operand = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        shape: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
        dtype: fc.constantFrom<DType>("float32", "float16"),
        foreign: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, {
          weight: 1,
          arbitrary: fc.constant(true),
        }),
        disposed: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, {
          weight: 1,
          arbitrary: fc.constant(true),
        }),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
    },
    { weight: 2, arbitrary: fc.double() },
    { weight: 1, arbitrary: junk },
  );
  let succeeded = 0;
  await fc.assert(
    fc.asyncProperty(operand, operand, operand, async (...drawn) => {
      const before = backend.memory().liveCount;
      const made: Tensor[] = [];
      const args = drawn.map((d) => {
        if (d === null || typeof d !== "object" || !("shape" in d)) return d;
        const n = d.shape.reduce((a, b) => a * b, 1);
        // Conditions get zeros too, so both branches are taken.
        const values = normals(n, d.seed).map((x) => (x > 0.5 ? 0 : x));
        const t = tensor(values, {
          shape: d.shape,
          dtype: d.dtype,
          backend: d.foreign ? twin : backend,
        });
        made.push(t);
        if (d.disposed) t.dispose();
        return t;
      });
      let r: Tensor;
      try {
        r = where(args[0] as Tensor, args[1] as Tensor, args[2] as Tensor);
      } catch (e) {
        assert(allowed(e), `where threw a non-LeanattnError: ${e}`);
        for (const t of made) t.dispose();
        assert(backend.memory().liveCount === before, "a failed where leaked storage");
        return;
      }
      succeeded++;
      // Reference: broadcast by hand from the stored values.
      const vals = await Promise.all(
        args.map(async (x) => (x instanceof Tensor ? await x.data() : null)),
      );
      const shapes = args.map((x) => (x instanceof Tensor ? x.shape : []));
      const dtype = r.dtype;
      const got = await r.data();
      const out = r.shape;
      for (let o = 0; o < got.length; o++) {
        const at = (i: number) => {
          const v = vals[i] ? vals[i]![broadcastIndex(shapes[i], out, o)] : args[i] as number;
          return dtype === "float16" ? Math.f16round(v) : Math.fround(v);
        };
        const want = at(0) !== 0 ? at(1) : at(2);
        assert(Object.is(got[o], want) || (got[o] !== got[o] && want !== want), `element ${o}`);
      }
      r.dispose();
      for (const t of made) t.dispose();
      assert(backend.memory().liveCount === before, "where leaked storage");
    }),
    { numRuns: numRuns(backend, 300) },
  );
  if (Deno.env.get("FUZZ_DEBUG")) console.log({ succeeded });
  assert(succeeded > 0, "no where call ever succeeded: the property proves little");
});
