/**
 * Bad input to the attention entry points (naive, flash, flash-decoding, lean): every wrong
 * shape, dtype, backend, disposed tensor, non-tensor and bad option throws its named error
 * with expected vs given in the message, writes nothing and leaks nothing; absurd tile sizes
 * work and worker counts past the bound are refused. Random garbage: tests/fuzz_test.ts.
 */
import { ok as assert } from "node:assert/strict";
import { flashAttention, type FlashOptions } from "../attention/flash.ts";
import { leanAttention, type LeanOptions } from "../attention/lean.ts";
import { naiveAttention, type NaiveAttentionOptions } from "../attention/naive.ts";
import { MAX_TILE, MAX_WORKERS } from "../schedule/limits.ts";
import { randn } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  ShapeError,
} from "../tensor/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { compareIeee } from "./regress/cases.ts";
import { describeBackends } from "./_backends.ts";
import { type ErrorClass, expectError, twinOf } from "./_assert.ts";

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

/** Values that are not a positive integer, for blockN, numSplits, tileSize and grid. */
const BAD_COUNTS = [0, -1, -3, 1.5, 2.5, NaN, Infinity, "8"];

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
      q2: r([2, 3], 16),
      q16: r([2, 4, 2, 8], 17, "float16"),
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
        [ShapeError, () => attn(f.q2, k, v), ["rank 4", "[2, 3]"], "q rank 2"],
        [ShapeError, () => attn(q, k, f.kD), ["[2, 2, 5, 8]", "[2, 2, 5, 4]"], "k/v D"],
        [ShapeError, () => attn(q, k, f.vN), ["same shape", "[2, 2, 5, 8]", "[2, 2, 6, 8]"], "N"],
        [ShapeError, () => attn(q, f.kH, f.kH), ["multiple", "Hq=4", "Hkv=3"], "Hq % Hkv"],
        [ShapeError, () => attn(f.qEmpty, k, v), ["≥ 1", "[2, 0, 2, 8]"], "empty q"],
        [ShapeError, () => attn(f.qD0, f.kD0, f.kD0), ["≥ 1", "[2, 4, 2, 0]"], "D = 0"],
        [DTypeError, () => attn(q, k, f.v16), ["float32", "float16"], "k/v dtypes"],
        [DTypeError, () => attn(f.q16, k, v), ["float16", "float32"], "q/k dtypes"],
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
        [ArgumentError, () => attn(q, k, v, { scale: NaN }), ["finite", "NaN"], "scale NaN"],
        [ArgumentError, () => attn(q, k, v, { causal: 1 }), ["boolean", "1"], "causal"],
        [ArgumentError, () => attn(q, k, v, { causal: "yes" }), ["boolean", "yes"], "causal str"],
        [ArgumentError, () => attn(q, k, v, { returnLse: "y" }), ["boolean", "y"], "returnLse"],
      ];
      if (op === "flashAttention") {
        for (const bad of BAD_COUNTS) {
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
        for (const bad of BAD_COUNTS) {
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
