/**
 * Bad variant options (window, softcap, sinks, alibiSlopes, bias) on every attention entry
 * point, and bad sinks to mergeAttentionStates: each throws its named error saying what was
 * expected and what was given, before anything is computed, and leaks nothing.
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import { flashAttention, type FlashOptions } from "../attention/flash.ts";
import { leanAttention, type LeanOptions } from "../attention/lean.ts";
import { naiveAttention, type NaiveAttentionOptions } from "../attention/naive.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { randn, tensor } from "../tensor/creation.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  ShapeError,
} from "../tensor/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { describeBackends } from "./_backends.ts";
import { type ErrorClass, expectError, twinOf } from "./_assert.ts";

type Attn = (q: Tensor, k: Tensor, v: Tensor, opts?: Record<string, unknown>) => unknown;

const ATTENTION: readonly [string, Attn][] = [
  ["naiveAttention", (q, k, v, o) => naiveAttention(q, k, v, o as NaiveAttentionOptions)],
  ["flashAttention", (q, k, v, o) => flashAttention(q, k, v, o as FlashOptions)],
  ["flashAttention", (q, k, v, o) => flashAttention(q, k, v, { numSplits: 2, ...o })],
  ["leanAttention", (q, k, v, o) => leanAttention(q, k, v, { grid: 3, ...o } as LeanOptions)],
];

describeBackends("variant options: every bad value throws its named error", (backend) => {
  // q [B=2, Hq=4, Sq=3, D=8], k/v [2, 2, N=5, 8].
  const q = randn([2, 4, 3, 8], { seed: 1, backend });
  const k = randn([2, 2, 5, 8], { seed: 2, backend });
  const v = randn([2, 2, 5, 8], { seed: 3, backend });
  const dead = randn([4], { seed: 4, backend });
  dead.dispose();
  const f16Sinks = tensor([0, 0, 0, 0], { dtype: "float16", backend });
  const shortSinks = tensor([0, 0, 0], { backend });
  const wideBias = randn([2, 4, 3, 6], { seed: 5, backend });
  const rank5Bias = randn([1, 2, 4, 3, 5], { seed: 6, backend });
  const twinBias = randn([5], { seed: 7, backend: twinOf(backend) });
  const cases: [Record<string, unknown>, ErrorClass, string[]][] = [
    [{ window: 4 }, ArgumentError, ["window", "{ left?, right? }", "4"]],
    [{ window: { left: -1 } }, ArgumentError, ["window.left", "non-negative integer", "-1"]],
    [{ window: { right: 2.5 } }, ArgumentError, ["window.right", "non-negative integer", "2.5"]],
    [{ window: { left: NaN } }, ArgumentError, ["window.left", "NaN"]],
    [{ window: { size: 3 } }, ArgumentError, ["left and right", "size"]],
    [{ softcap: 0 }, ArgumentError, ["softcap", "> 0", "0"]],
    [{ softcap: -5 }, ArgumentError, ["softcap", "-5"]],
    [{ softcap: Infinity }, ArgumentError, ["softcap", "finite", "Infinity"]],
    [{ sinks: [1, 2, 3] }, ArgumentError, ["sinks", "4 numbers", "3 numbers"]],
    [{ sinks: [1, 2, NaN, 3] }, ArgumentError, ["sinks[2]", "finite", "NaN"]],
    [{ sinks: "0" }, ArgumentError, ["sinks", "4 numbers"]],
    [{ sinks: shortSinks }, ShapeError, ["sinks", "[4]", "[3]"]],
    [{ sinks: f16Sinks }, DTypeError, ["sinks", "float32", "float16"]],
    [{ sinks: dead }, DisposedTensorError, []],
    [{ alibiSlopes: [0.1] }, ArgumentError, ["alibiSlopes", "4 numbers", "1 numbers"]],
    [{ alibiSlopes: [0, 0, Infinity, 0] }, ArgumentError, ["alibiSlopes[2]", "finite"]],
    [{ bias: [0, 0, 0, 0, 0] }, ArgumentError, ["bias", "Tensor"]],
    [{ bias: wideBias }, ShapeError, ["bias", "[2, 4, 3, 6]", "[2, 4, 3, 5]"]],
    [{ bias: rank5Bias }, ShapeError, ["bias", "does not broadcast"]],
    [{ bias: twinBias }, BackendMismatchError, ["bias", `${backend.name}-twin`]],
    [{ bias: dead }, DisposedTensorError, []],
    [{ windw: { left: 1 } }, ArgumentError, ["unknown option", "window"]],
    [{ softCap: 30 }, ArgumentError, ["unknown option", "softcap"]],
  ];
  const before = backend.memory().liveCount;
  for (const [name, attn] of ATTENTION) {
    for (const [opts, cls, mentions] of cases) {
      const what = `${name}(${JSON.stringify(opts)})`;
      expectError(cls, () => attn(q, k, v, opts), [
        // A disposed tensor's error names the tensor, as for q, k and v.
        ...(cls === DisposedTensorError ? [] : [name]),
        ...mentions,
      ], what);
    }
  }
  strictEqual(backend.memory().liveCount, before, "nothing leaked");
  // mergeAttentionStates validates its sinks the same way.
  const s = flashAttention(q, k, v, { returnLse: true });
  expectError(ArgumentError, () => mergeAttentionStates([s], { sinks: [1] }), [
    "mergeAttentionStates",
    "sinks",
    "4 numbers",
  ], "merge short sinks");
  expectError(ArgumentError, () => mergeAttentionStates([s], { sink: [1] } as never), [
    "unknown option",
    "sinks",
  ], "merge unknown option");
  const flat = { out: randn([4, 8], { seed: 8, backend }), lse: randn([4], { seed: 9, backend }) };
  expectError(ShapeError, () => mergeAttentionStates([flat], { sinks: [1, 2, 3, 4] }), [
    "[B, Hq, Sq, D]",
  ], "merge rank-2 states with sinks");
  assert(backend.memory().liveCount >= before);
  for (const t of [q, k, v, f16Sinks, shortSinks, wideBias, rank5Bias, twinBias]) t.dispose();
  for (const t of [s.out, s.lse, flat.out, flat.lse]) t.dispose();
});
