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
import { ok as assert, rejects, throws } from "node:assert/strict";
import fc from "fast-check";
import type { Backend } from "../backends/backend.ts";
import { where } from "../ops/where.ts";
import { flashAttention, type FlashOptions } from "../attention/flash.ts";
import { MAX_TILE, MAX_WORKERS } from "../schedule/limits.ts";
import { leanAttention, type LeanOptions } from "../attention/lean.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { naiveAttention, type NaiveAttentionOptions } from "../attention/naive.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { normals, uniformGenerator } from "../tensor/random.ts";
import { referenceAttention } from "../testing/reference.ts";
import { ALGOS as GATE_ALGOS, CASES, compareIeee, runAlgo } from "./regress/cases.ts";
import { type Baseline, compare } from "./regress/regress.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DeviceLostError,
  DisposedTensorError,
  DTypeError,
  type LeanattnError,
  ShapeError,
} from "../tensor/errors.ts";
import { backends, describeBackends, numRuns } from "./_backends.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { webgpu } from "../backends/webgpu/webgpu_backend.ts";

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

// ---------------------------------------------------------------------------------------------
// Bad input: the named error, expected vs given in the message, nothing written or leaked.

type Attn = (q: Tensor, k: Tensor, v: Tensor, opts?: Record<string, unknown>) => unknown;

/** Extra options merged into `o` when it is an object (a non-object is passed as is). */
const withDefaults = (extra: Record<string, unknown>, o: unknown) =>
  o !== null && typeof o === "object" ? { ...extra, ...o } : o;

/** Every attention entry point, the way a user calls it. */
const ATTENTION: readonly [string, Attn][] = [
  ["naiveAttention", (q, k, v, o) => naiveAttention(q, k, v, o as NaiveAttentionOptions)],
  ["flashAttention", (q, k, v, o) => flashAttention(q, k, v, o as FlashOptions)],
  [
    "flashAttention",
    (q, k, v, o) =>
      flashAttention(q, k, v, withDefaults({ numSplits: 3, blockN: 2 }, o) as FlashOptions),
  ],
  [
    "leanAttention",
    (q, k, v, o) => leanAttention(q, k, v, withDefaults({ grid: 3 }, o) as LeanOptions),
  ],
];

function twinOf(backend: Backend): Backend {
  return new Proxy(backend, {
    get(t, p) {
      if (p === "name") return `${t.name}-twin`;
      const v = Reflect.get(t, p, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

describeBackends(
  "attention: every bad input throws its named error and writes nothing",
  async (backend) => {
    const r = (shape: number[], seed: number, dtype: DType = "float32") =>
      randn(shape, { seed, dtype, backend });
    const q = r([2, 4, 2, 8], 1);
    const k = r([2, 2, 5, 8], 2);
    const v = r([2, 2, 5, 8], 3);
    const inputs = [q, k, v];
    const snapshot = await Promise.all(inputs.map((t) => t.data()));
    const fixtures = {
      q3: r([2, 4, 8], 4),
      k5: r([2, 2, 5, 8, 1], 5),
      kB: r([1, 2, 5, 8], 6),
      kD: r([2, 2, 5, 4], 7),
      vN: r([2, 2, 6, 8], 8),
      kH: r([2, 3, 5, 8], 9),
      qEmpty: r([2, 0, 2, 8], 10),
      qD0: r([2, 4, 2, 0], 11),
      kD0: r([2, 2, 5, 0], 12),
      v16: r([2, 2, 5, 8], 13, "float16"),
      kTwin: randn([2, 2, 5, 8], { seed: 14, backend: twinOf(backend) }),
      gone: r([2, 2, 5, 8], 15),
    };
    fixtures.gone.dispose();
    const f = fixtures;
    const before = backend.memory().liveCount;
    for (const [op, attn] of ATTENTION) {
      const at = (what: string) => `${op} ${what}`;
      const cases: [ErrorClass, () => unknown, string[], string][] = [
        [ShapeError, () => attn(f.q3, k, v), ["rank 4", "[2, 4, 8]"], "q rank"],
        [ShapeError, () => attn(q, f.k5, v), ["rank 4", "[2, 2, 5, 8, 1]"], "k rank"],
        [ShapeError, () => attn(q, f.kB, f.kB), ["batch", "[2, 4, 2, 8]", "[1, 2, 5, 8]"], "B"],
        [ShapeError, () => attn(q, f.kD, f.kD), ["D", "[2, 4, 2, 8]", "[2, 2, 5, 4]"], "D"],
        [ShapeError, () => attn(q, k, f.vN), ["same shape", "[2, 2, 5, 8]", "[2, 2, 6, 8]"], "N"],
        [ShapeError, () => attn(q, f.kH, f.kH), ["multiple", "Hq=4", "Hkv=3"], "Hq % Hkv"],
        [ShapeError, () => attn(f.qEmpty, k, v), ["≥ 1", "[2, 0, 2, 8]"], "empty q"],
        [ShapeError, () => attn(f.qD0, f.kD0, f.kD0), ["≥ 1", "[2, 4, 2, 0]"], "D = 0"],
        [DTypeError, () => attn(q, k, f.v16), ["float32", "float16"], "k/v dtypes"],
        [BackendMismatchError, () => attn(q, f.kTwin, f.kTwin), [`${backend.name}-twin`], "twin"],
        [DisposedTensorError, () => attn(q, f.gone, v), ["dispose", "[2, 2, 5, 8]"], "disposed"],
        [ArgumentError, () => attn({} as Tensor, k, v), ["q must be a Tensor"], "q not a tensor"],
        [ArgumentError, () => attn(q, k, v, "x" as never), ["options", "x"], "options string"],
        [ArgumentError, () => attn(q, k, v, { kvLens: [5] }), ["2 lengths", "1 lengths"], "len"],
        [ArgumentError, () => attn(q, k, v, { kvLens: "5" }), ["2 lengths", "5"], "kvLens str"],
        [ArgumentError, () => attn(q, k, v, { kvLens: [-1, 5] }), ["[0, 5]", "-1"], "negative"],
        [ArgumentError, () => attn(q, k, v, { kvLens: [5, 2.5] }), ["[0, 5]", "2.5"], "fraction"],
        [ArgumentError, () => attn(q, k, v, { kvLens: [NaN, 5] }), ["[0, 5]", "NaN"], "NaN len"],
        [ArgumentError, () => attn(q, k, v, { kvLens: [6, 5] }), ["[0, 5]", "6"], "len > N"],
        [ArgumentError, () => attn(q, k, v, { scale: Infinity }), ["finite", "Infinity"], "scale"],
        [ArgumentError, () => attn(q, k, v, { causal: 1 }), ["boolean", "1"], "causal"],
        [ArgumentError, () => attn(q, k, v, { returnLse: "y" }), ["boolean", "y"], "returnLse"],
      ];
      if (op === "flashAttention") {
        for (const bad of [0, -1, 1.5, NaN, Infinity, "8"]) {
          cases.push([
            ArgumentError,
            () => attn(q, k, v, { blockN: bad }),
            ["blockN", "positive integer", String(bad)],
            `blockN ${bad}`,
          ]);
          cases.push([
            ArgumentError,
            () => attn(q, k, v, { numSplits: bad === "8" ? "many" : bad }),
            ["numSplits", "positive integer", bad === "8" ? "many" : String(bad)],
            `numSplits ${bad}`,
          ]);
        }
      }
      if (op === "leanAttention") {
        for (const bad of [0, -1, 1.5, NaN, Infinity, "8"]) {
          for (const name of ["tileSize", "grid"]) {
            cases.push([
              ArgumentError,
              () => attn(q, k, v, { [name]: bad }),
              [name, "positive integer", String(bad)],
              `${name} ${bad}`,
            ]);
          }
        }
      }
      for (const [cls, fn, mentions, what] of cases) expectError(cls, fn, mentions, at(what));
    }
    assert(backend.memory().liveCount === before, "a failed attention call left storage behind");
    const after = await Promise.all(inputs.map((t) => t.data()));
    assert(
      after.every((a, i) => a.every((x, j) => Object.is(x, snapshot[i][j]))),
      "inputs changed",
    );
    for (const t of [...inputs, ...Object.values(f)]) t.dispose();
  },
);

describeBackends(
  "mergeAttentionStates: bad states throw named errors and write nothing",
  (backend) => {
    const r = (shape: number[], seed: number, dtype: DType = "float32") =>
      randn(shape, { seed, dtype, backend });
    const a = { out: r([2, 3, 4], 1), lse: r([2, 3], 2) };
    const b = { out: r([2, 3, 4], 3), lse: r([2, 3], 4) };
    const wide = { out: r([2, 3, 5], 5), lse: r([2, 3], 6) };
    const lseShape = { out: r([2, 3, 4], 7), lse: r([3, 2], 8) };
    const lse16 = { out: r([2, 3, 4], 9), lse: r([2, 3], 10, "float16") };
    const out16 = { out: r([2, 3, 4], 11, "float16"), lse: r([2, 3], 12) };
    const scalar = { out: tensor(1, { backend }), lse: tensor(0, { backend }) };
    const twin = twinOf(backend);
    const far = { out: randn([2, 3, 4], { seed: 13, backend: twin }), lse: r([2, 3], 14) };
    const gone = { out: r([2, 3, 4], 15), lse: r([2, 3], 16) };
    gone.lse.dispose();
    const before = backend.memory().liveCount;
    const m = mergeAttentionStates;
    expectError(ArgumentError, () => m([]), ["non-empty", "empty array"], "no states");
    expectError(ArgumentError, () => m(a as never), ["non-empty array"], "not an array");
    expectError(ArgumentError, () => m([a, { out: a.out } as never]), ["states[1]"], "no lse");
    expectError(ShapeError, () => m([a, wide]), ["[2, 3, 4]", "[2, 3, 5]"], "out shapes");
    expectError(ShapeError, () => m([a, lseShape]), ["[2, 3]", "[3, 2]"], "lse shape");
    expectError(DTypeError, () => m([a, lse16]), ["float32", "float16"], "lse dtype");
    expectError(DTypeError, () => m([a, out16]), ["float32", "float16"], "out dtypes");
    expectError(ShapeError, () => m([scalar]), ["rank", "[]"], "rank 0");
    expectError(BackendMismatchError, () => m([a, far]), [`${backend.name}-twin`], "backends");
    expectError(DisposedTensorError, () => m([a, gone]), ["dispose"], "disposed");
    assert(backend.memory().liveCount === before, "a failed merge left storage behind");
    const ok = m([a, b]);
    assert(ok.out.shape.join() === "2,3,4" && ok.lse.shape.join() === "2,3");
    for (const s of [a, b, wide, lseShape, lse16, out16, scalar, far, gone, ok]) {
      s.out.dispose();
      s.lse.dispose();
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Values: non-finite and extreme inputs against the float64 reference.

const ALGOS = ["naive", "flash", "flash-decoding", "lean"] as const;

interface ValueCase {
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  D: number;
  causal: boolean;
  kvLens?: number[];
  scale?: number;
  tile: number;
  numSplits: number;
  grid: number;
}

const spike = fc.record({
  where: fc.constantFrom("q", "k", "v"),
  at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  value: fc.constantFrom(NaN, Infinity, -Infinity),
  row: fc.boolean(), // the whole D-vector, else one element
});

const valueCase = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  Hkv: fc.integer({ min: 1, max: 2 }),
  group: fc.integer({ min: 1, max: 3 }),
  Sq: fc.integer({ min: 1, max: 4 }),
  N: fc.integer({ min: 1, max: 40 }),
  D: fc.integer({ min: 1, max: 8 }),
  causal: fc.boolean(),
  lens: fc.option(
    fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 2 }),
  ),
  tile: fc.integer({ min: 1, max: 16 }),
  numSplits: fc.integer({ min: 2, max: 6 }),
  grid: fc.integer({ min: 1, max: 9 }),
  spikes: fc.array(spike, { minLength: 1, maxLength: 4 }),
  seed: fc.integer({ min: 0, max: 1_000_000 }),
});

/** Tolerances for the finite entries (the non-finite ones must match exactly). */
function finiteTolerance(ref: ArrayLike<number>, floor: number, N: number): number {
  let m = floor;
  for (let i = 0; i < ref.length; i++) {
    if (Number.isFinite(ref[i])) m = Math.max(m, Math.abs(ref[i]));
  }
  return 2e-5 * m * Math.max(1, Math.log2(N) / 4);
}

/**
 * Output entries the contract leaves open: column d of a row that has a visible key with
 * score −∞ (weight 0) whose value in column d is NaN or ±∞. IEEE says `0·∞ = NaN`; a kernel
 * that skips a tile of −∞ scores never forms the product. Only there may results differ.
 */
function unspecified(
  c: ValueCase,
  x: { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number> },
): Uint8Array {
  const skip = new Uint8Array(c.B * c.Hq * c.Sq * c.D);
  const scale = c.scale ?? 1 / Math.sqrt(c.D);
  const group = c.Hq / c.Hkv;
  for (let b = 0; b < c.B; b++) {
    const len = c.kvLens?.[b] ?? c.N;
    for (let h = 0; h < c.Hq; h++) {
      const kv = ((b * c.Hkv + Math.floor(h / group)) * c.N) * c.D;
      for (let i = 0; i < c.Sq; i++) {
        const row = ((b * c.Hq + h) * c.Sq + i) * c.D;
        const visible = c.causal ? Math.max(0, Math.min(len, len - c.Sq + i + 1)) : len;
        for (let j = 0; j < visible; j++) {
          let dot = 0;
          for (let d = 0; d < c.D; d++) dot += x.q[row + d] * x.k[kv + j * c.D + d];
          if (scale * dot !== -Infinity) continue;
          for (let d = 0; d < c.D; d++) {
            if (!Number.isFinite(x.v[kv + j * c.D + d])) skip[row + d] = 1;
          }
        }
      }
    }
  }
  return skip;
}

/** Runs every algorithm on the given values and checks out and lse against the reference. */
async function checkAgainstReference(
  backend: Backend,
  c: ValueCase,
  data: { q: Float32Array; k: Float32Array; v: Float32Array },
  dtype: DType,
  what: string,
): Promise<void> {
  const q = tensor(data.q, { shape: [c.B, c.Hq, c.Sq, c.D], dtype, backend });
  const k = tensor(data.k, { shape: [c.B, c.Hkv, c.N, c.D], dtype, backend });
  const v = tensor(data.v, { shape: [c.B, c.Hkv, c.N, c.D], dtype, backend });
  // The reference sees the stored (rounded) values.
  const stored = { q: await q.data(), k: await k.data(), v: await v.data() };
  const ref = referenceAttention({ ...c, ...stored });
  const open = unspecified(c, stored);
  const settle = (out: Float32Array) => out.map((x, i) => (open[i] ? ref.out[i] : x));
  const tolOut = finiteTolerance(ref.out, 1e-3, c.N) +
    (dtype === "float16" ? 2 * 2 ** -11 * finiteTolerance(ref.out, 0, 1) / 2e-5 : 0);
  const tolLse = finiteTolerance(ref.lse, 1, c.N);
  const states = ALGOS.map((a) => [a, runAlgo(a, q, k, v, c)] as const);
  try {
    for (const [algo, s] of states) {
      const out = settle(await s.out.data());
      const lse = await s.lse.data();
      const eo = compareIeee(out, ref.out, tolOut);
      const el = compareIeee(lse, ref.lse, tolLse);
      assert(eo === null, `${what}: ${algo} out ${eo} (${JSON.stringify(c)})`);
      assert(el === null, `${what}: ${algo} lse ${el} (${JSON.stringify(c)})`);
    }
  } finally {
    for (const [, s] of states) {
      s.out.dispose();
      s.lse.dispose();
    }
    for (const t of [q, k, v]) t.dispose();
  }
}

/**
 * Draws cases and spikes of NaN/±∞; with `scores: false` spikes land only in V (anywhere)
 * and in K rows past kvLens, so no visible score is non-finite.
 */
async function nonFiniteProperty(backend: Backend, scores: boolean): Promise<void> {
  await fc.assert(
    fc.asyncProperty(valueCase, async (d) => {
      const c: ValueCase = {
        B: d.B,
        Hq: d.Hkv * d.group,
        Hkv: d.Hkv,
        Sq: d.Sq,
        N: d.N,
        D: d.D,
        causal: d.causal,
        kvLens: d.lens
          ? Array.from(
            { length: d.B },
            (_, b) => Math.floor(d.lens![b % d.lens!.length] * (d.N + 1)),
          )
          : undefined,
        tile: d.tile,
        numSplits: d.numSplits,
        grid: d.grid,
      };
      const data = {
        q: normals(c.B * c.Hq * c.Sq * c.D, d.seed),
        k: normals(c.B * c.Hkv * c.N * c.D, d.seed + 1),
        v: normals(c.B * c.Hkv * c.N * c.D, d.seed + 2),
      };
      for (const s of d.spikes) {
        const which = !scores && s.where === "q" ? "v" : s.where as "q" | "k" | "v";
        const arr = data[which];
        const i = Math.floor(s.at * arr.length);
        if (!scores && which === "k") {
          const key = Math.floor(i / c.D);
          const b = Math.floor(key / (c.Hkv * c.N));
          if (key % c.N < (c.kvLens?.[b] ?? c.N)) continue; // visible: not in this property
        }
        if (s.row) arr.fill(s.value, i - (i % c.D), i - (i % c.D) + c.D);
        else arr[i] = s.value;
      }
      await checkAgainstReference(backend, c, data, "float32", "non-finite");
    }),
    { numRuns: numRuns(backend, 100) },
  );
}

describeBackends(
  "NaN and ±∞ in V, and in hidden keys, behave exactly as in the float64 reference",
  (backend) => nonFiniteProperty(backend, false),
);

describeBackends(
  "NaN and ±∞ anywhere in q, k or v (non-finite scores) behave exactly as in the reference",
  (backend) => nonFiniteProperty(backend, true),
);

describeBackends(
  "extreme finite values: logits of ±1e4, values of 1e30, float16 values near 65504",
  async (backend) => {
    const c: ValueCase = {
      B: 2,
      Hq: 4,
      Hkv: 2,
      Sq: 3,
      N: 50,
      D: 4,
      causal: true,
      kvLens: [50, 17],
      scale: 1,
      tile: 8,
      numSplits: 3,
      grid: 5,
    };
    const nq = c.B * c.Hq * c.Sq * c.D;
    const nk = c.B * c.Hkv * c.N * c.D;
    const u = uniformGenerator(7);
    const ints = (n: number, max: number) =>
      Float32Array.from({ length: n }, () => Math.round((2 * u() - 1) * max));
    // Integer q and k make every logit an exact integer up to ±1e4 in float32 and float16,
    // so the only rounding left is the softmax's own: a tight check of its stability.
    const logits = { q: ints(nq, 100), k: ints(nk, 25), v: normals(nk, 8) };
    for (const dtype of ["float32", "float16"] as const) {
      await checkAgainstReference(backend, c, logits, dtype, `logits ±1e4 ${dtype}`);
    }
    const d = { ...c, scale: undefined, D: 16, causal: false };
    const n16 = (n: number) => d.B * (n === 0 ? d.Hq * d.Sq : d.Hkv * d.N) * d.D;
    const huge = {
      q: normals(n16(0), 9),
      k: normals(n16(1), 10),
      v: normals(n16(1), 11).map((x) => x * 1e30),
    };
    await checkAgainstReference(backend, d, huge, "float32", "values 1e30");
    // Values at and just below the largest float16: every output must stay finite.
    const top = normals(n16(1), 12).map((x, i) =>
      i % 7 === 0 ? Math.sign(x) * 65504 : Math.sign(x) * (60000 + Math.abs(x) * 1000)
    );
    const near = { q: normals(n16(0), 13), k: normals(n16(1), 14), v: top };
    await checkAgainstReference(backend, d, near, "float16", "float16 values near 65504");
  },
);

// ---------------------------------------------------------------------------------------------
// Device loss (ops and reads of plain ops are covered in webgpu_test.ts).

Deno.test({
  name: "device loss: attention, merge, reads and copies throw DeviceLostError; a new device works",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    if (!(await backends()).some((b) => b.name === "webgpu")) {
      console.warn("  (no webgpu backend: skipped)");
      return;
    }
    const doomed = await webgpu();
    const survivor = await webgpu(); // another device: must not notice
    const make = (b: Backend, seed: number) => ({
      q: randn([1, 2, 1, 8], { seed, backend: b }),
      k: randn([1, 1, 20, 8], { seed: seed + 1, backend: b }),
      v: randn([1, 1, 20, 8], { seed: seed + 2, backend: b }),
    });
    const x = make(doomed, 1);
    const pending = flashAttention(x.q, x.k, x.v, { returnLse: true }); // in flight
    doomed.destroy();
    assert(doomed.lost);
    const lostOps: [string, () => unknown][] = [
      ["naive", () => naiveAttention(x.q, x.k, x.v)],
      ["flash", () => flashAttention(x.q, x.k, x.v)],
      ["flash-decoding", () => flashAttention(x.q, x.k, x.v, { numSplits: 2 })],
      ["lean", () => leanAttention(x.q, x.k, x.v, { grid: 3 })],
      ["merge", () => mergeAttentionStates([pending])],
      ["where", () => where(x.k, x.k, 0)],
      ["randn", () => randn([2], { seed: 1, backend: doomed })],
    ];
    for (const [name, f] of lostOps) expectError(DeviceLostError, f, ["device"], name);
    for (const t of [x.q, pending.out, pending.lse]) {
      await rejects(t.data(), DeviceLostError, `read of ${t}`);
      await rejects(t.to(cpu()), DeviceLostError, `copy of ${t}`);
    }
    for (const t of [x.q, x.k, x.v, pending.out, pending.lse]) t.dispose(); // harmless
    doomed.destroy(); // idempotent

    // The other device, and a fresh one, still compute attention correctly.
    for (const b of [survivor, await webgpu()]) {
      const y = make(b, 5);
      const got = await leanAttention(y.q, y.k, y.v, { grid: 3, tileSize: 4 }).data();
      const ref = referenceAttention({
        q: await y.q.data(),
        k: await y.k.data(),
        v: await y.v.data(),
        B: 1,
        Hq: 2,
        Hkv: 1,
        Sq: 1,
        N: 20,
        D: 8,
      });
      assert(compareIeee(got, ref.out, 1e-5) === null, "attention after a device loss");
      b.destroy();
    }
  },
});

describeBackends("mergeAttentionStates with D = 0 still merges the lse", async (backend) => {
  // Attention needs D ≥ 1, but merge accepts outs [..., 0]: the LSEs must merge regardless.
  const a = { out: tensor([], { shape: [2, 0], backend }), lse: tensor([0.5, -1], { backend }) };
  const b = {
    out: tensor([], { shape: [2, 0], backend }),
    lse: tensor([0.5, -Infinity], { backend }),
  };
  const r = mergeAttentionStates([a, b]);
  assert(r.out.shape.join() === "2,0" && r.lse.shape.join() === "2");
  const got = await r.lse.data();
  const want = [0.5 + Math.log(2), -1];
  assert(compareIeee(got, want, 1e-6) === null, `lse ${got}, want ${want}`);
  for (const t of [a.out, a.lse, b.out, b.lse, r.out, r.lse]) t.dispose();
});

describeBackends(
  "absurd sizes: huge tiles work, worker counts past the bound are refused",
  async (backend) => {
    const q = randn([1, 2, 1, 8], { seed: 1, backend });
    const k = randn([1, 1, 30, 8], { seed: 2, backend });
    const v = randn([1, 1, 30, 8], { seed: 3, backend });
    const want = await flashAttention(q, k, v).data();
    for (
      const r of [
        flashAttention(q, k, v, { blockN: MAX_TILE }),
        leanAttention(q, k, v, { tileSize: MAX_TILE, grid: 3 }),
      ]
    ) {
      assert(compareIeee(await r.data(), want, 1e-6) === null, "one huge tile");
      r.dispose();
    }
    // Past 2^30 a 32-bit key index could wrap (it silently did at 2^32 on WebGPU).
    const tile = String(MAX_TILE);
    expectError(ArgumentError, () => flashAttention(q, k, v, { blockN: 2 ** 32 }), [tile], "N");
    expectError(ArgumentError, () => leanAttention(q, k, v, { tileSize: 2 ** 40 }), [tile], "T");
    // A schedule holds a run per worker: 2^21 workers would only exhaust memory.
    const bound = String(MAX_WORKERS);
    expectError(ArgumentError, () => leanAttention(q, k, v, { grid: 2 ** 21 }), [bound], "grid");
    expectError(
      ArgumentError,
      () => flashAttention(q, k, v, { numSplits: 2 ** 21 }),
      [bound, String(2 ** 21)],
      "numSplits",
    );
    const wide = randn([64, 64, 1, 1], { seed: 4, backend });
    const wk = randn([64, 64, 2, 1], { seed: 5, backend });
    expectError(
      ArgumentError,
      () => flashAttention(wide, wk, wk, { numSplits: 2 ** 9 }),
      ["4096 units", bound],
      "units × numSplits",
    );
    for (const t of [q, k, v, wide, wk]) t.dispose();
  },
);

// ---------------------------------------------------------------------------------------------
// The regression gate's verdicts (tests/regress/regress.ts), without running its cases.

Deno.test("regress gate: growth, NaN, new, gone and absent-backend rows", async () => {
  const row = (out: number, lse: number, dtype = "float32") => ({ dtype, out, lse });
  const old = {
    "cpu/a/flash": row(1e-6, 1e-7),
    "cpu/b/flash": row(1e-6, 1e-7),
    "cpu/c/flash": row(1e-9, 1e-9),
    "cpu/d/flash": row(1e-6, 1e-7),
    "cpu/gone/flash": row(1e-6, 1e-7),
    "cpu/h/flash": row(2e-4, 1e-7, "float16"),
    "webgpu/a/flash": row(1e-6, 1e-7),
  };
  const now = new Map([
    ["cpu/a/flash", row(1.9e-6, 1e-7)], // within 2×
    ["cpu/b/flash", row(2.1e-6, 1e-7)], // grew past 2×
    ["cpu/c/flash", row(9e-8, 9e-8)], // 90× but under the float32 floor (1e-7)
    ["cpu/d/flash", row(NaN, 1e-7)], // a NaN
    ["cpu/h/flash", row(9e-5 * 4, 3e-7, "float16")], // f16 out within 2×, lse past 2× and floor
    ["cpu/new/flash", row(1e-6, 1e-7)],
  ]);
  const run = (ci: boolean, only: string | null = null, update = false) =>
    compare(old, now, new Set(["cpu"]), { ci, update, only });
  const local = run(false);
  const failed = (r: { failures: string[] }) =>
    r.failures.map((f) => f.split(":")[0]).sort().join(" ");
  assert(
    failed(local) === "cpu/b/flash cpu/d/flash cpu/gone/flash cpu/h/flash cpu/new/flash",
    `failures: ${local.failures.join("; ")}`,
  );
  assert(local.skipped === 1, "the absent backend's row is skipped");
  assert(failed(run(true)).includes("webgpu/a/flash"), "CI=true: an absent backend fails");
  assert(!failed(run(true, "cpu")).includes("webgpu"), "--backend cpu skips webgpu under CI");
  assert(!failed(run(false, null, true)).includes("new"), "--update accepts new rows");
  // The committed baseline holds every case × algorithm on both backends, and no NaN.
  const base = JSON.parse(
    await Deno.readTextFile(new URL("./regress/baseline.json", import.meta.url)),
  ) as Baseline;
  for (const backend of ["cpu", "webgpu"]) {
    for (const c of CASES) {
      for (const algo of GATE_ALGOS) {
        const r = base.rows[`${backend}/${c.name}/${algo}`];
        assert(
          r && Number.isFinite(r.out) && Number.isFinite(r.lse),
          `${backend}/${c.name}/${algo}`,
        );
      }
    }
  }
});
