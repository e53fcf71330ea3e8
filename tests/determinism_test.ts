/**
 * Determinism: 100 repeated calls of every algorithm (naive, flash, flash-decoding with fixed
 * and "auto" splits, lean with cut heads, and the merge) give bit-identical out and lse on
 * each backend. Fixed merge orders and no float atomics make this hold by construction; the
 * test checks it, and on WebGPU also that no output depends on leftover pool contents: before
 * every call the pool is stocked with freed buffers full of NaN, and the calls are pipelined
 * (all submitted, then all read) so buffers are recycled while earlier results are in flight
 * and automatic submissions fall between the dispatches of one op.
 */
import { ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import type { AttentionState } from "../attention/merge.ts";
import { naiveAttention } from "../attention/naive.ts";
import { full, randn } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { describeBackends } from "./_backends.ts";

const CALLS = 100;

interface Problem {
  name: string;
  shapeQ: number[];
  shapeKV: number[];
  dtype: DType;
  causal: boolean;
  kvLens: number[];
}

const PROBLEMS: Problem[] = [
  {
    name: "prefill causal f32",
    shapeQ: [2, 4, 3, 16],
    shapeKV: [2, 2, 77, 16],
    dtype: "float32",
    causal: true,
    kvLens: [77, 40],
  },
  {
    name: "decode f16",
    shapeQ: [3, 6, 1, 8],
    shapeKV: [3, 2, 150, 8],
    dtype: "float16",
    causal: false,
    kvLens: [150, 0, 61],
  },
];

type Run = (q: Tensor, k: Tensor, v: Tensor, p: Problem) => AttentionState;

const ALGORITHMS: [string, Run][] = [
  ["naive", (q, k, v, p) => naiveAttention(q, k, v, { ...opts(p), returnLse: true })],
  ["flash", (q, k, v, p) => flashAttention(q, k, v, { ...opts(p), blockN: 16, returnLse: true })],
  [
    "flash-decoding",
    (q, k, v, p) =>
      flashAttention(q, k, v, { ...opts(p), blockN: 8, numSplits: 3, returnLse: true }),
  ],
  [
    "flash-decoding auto",
    (q, k, v, p) => flashAttention(q, k, v, { ...opts(p), numSplits: "auto", returnLse: true }),
  ],
  [
    "lean",
    (q, k, v, p) => leanAttention(q, k, v, { ...opts(p), tileSize: 7, grid: 11, returnLse: true }),
  ],
  [
    "merge",
    (q, k, v, p) => {
      const a = flashAttention(q, k, v, { ...opts(p), blockN: 8, returnLse: true });
      const b = leanAttention(q, k, v, { ...opts(p), tileSize: 5, grid: 3, returnLse: true });
      const m = mergeAttentionStates([a, b, a]);
      for (const t of [a.out, a.lse, b.out, b.lse]) t.dispose();
      return m;
    },
  ],
];

function opts(p: Problem) {
  return { causal: p.causal, kvLens: p.kvLens };
}

/** Frees a few NaN-filled buffers of assorted sizes, so the pool hands out dirty storage. */
function poisonPool(backend: Backend, round: number): void {
  for (const n of [1, 7, 64, 200 + round, 1000, 4800]) {
    full([n], NaN, { backend }).dispose();
    full([n], NaN, { backend, dtype: "float16" }).dispose();
  }
}

/** Bit pattern of float32 values (so NaN payloads and −0 count too). */
function bits(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

function sameBits(a: Float32Array, b: Float32Array): number {
  const x = bits(a);
  const y = bits(b);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

describeBackends(
  `${CALLS} repeated calls of every algorithm are bit-identical`,
  async (backend) => {
    for (const p of PROBLEMS) {
      const q = randn(p.shapeQ, { seed: 1, dtype: p.dtype, backend });
      const k = randn(p.shapeKV, { seed: 2, dtype: p.dtype, backend });
      const v = randn(p.shapeKV, { seed: 3, dtype: p.dtype, backend });
      for (const [name, run] of ALGORITHMS) {
        const states: AttentionState[] = [];
        for (let c = 0; c < CALLS; c++) {
          poisonPool(backend, c);
          states.push(run(q, k, v, p));
        }
        // Reads in flight together resolve on one device poll (one wait, not 200).
        const results = await Promise.all(
          states.map(async (s) => [await s.out.data(), await s.lse.data()] as const),
        );
        for (const s of states) {
          s.out.dispose();
          s.lse.dispose();
        }
        const first = results[0];
        assert(first[0].some((x) => x !== 0), `${p.name} ${name}: all zeros`);
        for (let c = 1; c < CALLS; c++) {
          for (const [i, what] of [[0, "out"], [1, "lse"]] as const) {
            const at = sameBits(results[c][i], first[i]);
            assert(
              at === -1,
              `${backend.name} ${p.name} ${name}: call ${c} ${what}[${at}] = ${
                results[c][i][at]
              }, ` +
                `call 0 gave ${first[i][at]}`,
            );
          }
        }
      }
      for (const t of [q, k, v]) t.dispose();
    }
  },
);
