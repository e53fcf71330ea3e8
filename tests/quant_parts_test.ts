/**
 * Quantized K/V stored in parts on WebGPU (a tensor over one buffer binding is cut along N;
 * here a device with a small part size, `partBytes`, so every path is cheap):
 *
 * - `quantize` of x in parts and `dequantize` of the result have exactly the bits of the same
 *   calls on the whole tensor (int8 and float8e4m3, float32 and float16 x, D not a multiple
 *   of 4 so data words straddle parts, a zero block and a non-finite block, several part
 *   counts); the data is stored in parts where over one binding, int8 scales cut where the
 *   data is; nothing leaks.
 * - flash, flash-decoding and lean over such K/V equal the float64 reference over the
 *   dequantized K/V within the float32 tolerance, and where the plan runs one part only they
 *   have the bits of the same call on whole K/V.
 * - Bad input stays a named error: token scales not cut like the data, naive over K/V in parts.
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention, leanAttentionPlan } from "../attention/lean.ts";
import { naiveAttention } from "../attention/naive.ts";
import type { AttentionState } from "../attention/merge.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import { dequantize, quantize, type QuantizedTensor } from "../ops/quantize.ts";
import { tensor } from "../tensor/creation.ts";
import type { ComputeDType, QuantDType } from "../tensor/dtype.ts";
import { LimitError } from "../tensor/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { ownWebgpu, webgpuBackend } from "./_backends.ts";
import { expectError } from "./_assert.ts";
import { infoOf, randomArray } from "./_paged.ts";
import { hostProblem, sameBits } from "./_paged_api.ts";

const FORMATS: QuantDType[] = ["int8", "float8e4m3"];

/** Where the backend cut `t` along N (null: whole). */
const cuts = (b: WebGpuBackend, t: Tensor, shape = t.shape) =>
  b.storageParts({ ...infoOf(t), shape })?.map((p) => p.n0).join() ?? null;

const freeQ = (...qs: QuantizedTensor[]) => {
  for (const x of qs) {
    x.data.dispose();
    x.scale.dispose();
  }
};

/** A test on a WebGPU device of its own that stores tensors over `partBytes` in parts. */
function partsTest(
  name: string,
  partBytes: number,
  fn: (gpu: WebGpuBackend, whole: WebGpuBackend) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const whole = await webgpuBackend();
      if (!whole) return;
      const gpu = await ownWebgpu({ partBytes });
      try {
        await fn(gpu, whole);
      } finally {
        gpu.destroy();
      }
    },
  });
}

Deno.test({
  name: "quantize/dequantize of x in parts: the bits of the whole tensor's, data cut by its size",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const whole = await webgpuBackend();
    if (!whole) return;
    // [B, H, N, D] with D = 5 (data words straddle rows and parts) and D = 8.
    const cases: { shape: number[]; partBytes: number; xDtype: ComputeDType; seed: number }[] = [
      { shape: [2, 3, 300, 5], partBytes: 4096, xDtype: "float32", seed: 11 },
      { shape: [2, 3, 300, 5], partBytes: 4096, xDtype: "float16", seed: 12 },
      { shape: [1, 2, 700, 8], partBytes: 2048, xDtype: "float32", seed: 13 },
      { shape: [1, 1, 3001, 5], partBytes: 8192, xDtype: "float32", seed: 14 },
      { shape: [3, 2, 129, 8], partBytes: 8192, xDtype: "float16", seed: 15 },
    ];
    for (const { shape, partBytes, xDtype, seed } of cases) {
      const gpu = await ownWebgpu({ partBytes });
      try {
        const [B, H, N, D] = shape;
        const values = randomArray(B * H * N * D, seed);
        // A zero token (int8 scale 0) and a NaN and an ∞ (their blocks' scales NaN).
        values.fill(0, 7 * D, 8 * D);
        values[(N + 3) * D + 1] = NaN;
        if (B * H > 2) values[2 * N * D + 5] = -Infinity;
        const xw = tensor(values, { shape, dtype: xDtype, backend: whole });
        const xp = tensor(values, { shape, dtype: xDtype, backend: gpu });
        const what = `${JSON.stringify(shape)} ${xDtype} over ${partBytes} B`;
        assert(cuts(gpu, xp) !== null, `${what}: x is in parts`);
        const live = gpu.memory().liveCount;
        for (const dtype of FORMATS) {
          const w = quantize(xw, { dtype });
          const p = quantize(xp, { dtype });
          const at = `${what} ${dtype}`;
          try {
            // The data is cut by its own size (as an upload of that shape and dtype).
            const bytes = B * H * N * D;
            strictEqual(cuts(gpu, p.data) !== null, bytes > partBytes, `${at}: data in parts`);
            if (dtype === "int8") {
              strictEqual(cuts(gpu, p.scale, [B, H, N, 1]), cuts(gpu, p.data), `${at}: scale cut`);
            }
            sameBits(await p.data.data(), await w.data.data(), `${at} data`);
            sameBits(await p.scale.data(), await w.scale.data(), `${at} scale`);
            const dp = dequantize(p), dw = dequantize(w);
            sameBits(await dp.data(), await dw.data(), `${at} dequantize`);
            // Dequantize of whole data and scales into an output in parts.
            const dpw = dequantize({ dtype, data: p.data, scale: p.scale });
            sameBits(await dpw.data(), await dw.data(), `${at} dequantize again`);
            for (const t of [dp, dw, dpw]) t.dispose();
          } finally {
            freeQ(w, p);
          }
        }
        xp.dispose();
        xw.dispose();
        strictEqual(gpu.memory().liveCount, live - 1, `${what}: nothing leaked`);
      } finally {
        gpu.destroy();
      }
    }
  },
});

const ALGOS: [string, (q: Tensor, k: QuantizedTensor, v: QuantizedTensor, o: object) => unknown][] =
  [
    ["flash", (q, k, v, o) => flashAttention(q, k, v, { blockN: 16, ...o })],
    ["flash-decoding", (q, k, v, o) => flashAttention(q, k, v, { blockN: 16, numSplits: 3, ...o })],
    ["lean", (q, k, v, o) => leanAttention(q, k, v, { tileSize: 16, grid: 5, ...o })],
  ];

// K/V [2, 2, 600, 8]: int8 data 19 200 B over 4096 B → parts of 128 keys (float32 x: more).
partsTest(
  "flash and lean over quantized K/V in parts equal the float64 reference over dequantize",
  4096,
  async (gpu) => {
    const dims = { B: 2, Hq: 4, Hkv: 2, Sq: 1, N: 600, D: 8 };
    for (const qDtype of ["float32", "float16"] as const) {
      for (const Sq of [1, 3]) {
        const p = hostProblem(Sq * 7 + (qDtype === "float16" ? 1 : 0), { ...dims, Sq }, qDtype);
        const { B, Hq, Hkv, N, D } = p;
        const q = tensor(p.q, { shape: [B, Hq, Sq, D], dtype: qDtype, backend: gpu });
        const k = tensor(p.k, { shape: [B, Hkv, N, D], dtype: qDtype, backend: gpu });
        const v = tensor(p.v, { shape: [B, Hkv, N, D], dtype: qDtype, backend: gpu });
        try {
          for (const dtype of FORMATS) {
            const kq = quantize(k, { dtype }), vq = quantize(v, { dtype });
            const kd = dequantize(kq), vd = dequantize(vq);
            const k64 = await kd.data(), v64 = await vd.data();
            kd.dispose();
            vd.dispose();
            try {
              assert(cuts(gpu, kq.data) !== null, "quantized K in parts");
              // Ragged: the second sequence ends inside a part; causal prefill keeps its last
              // Sq − 1 keys off a part boundary.
              for (const causal of [false, true]) {
                const kvLens = [600, 333];
                const ref = referenceAttention({ ...p, k: k64, v: v64, kvLens, causal });
                const tol = attentionTolerances(ref, N, qDtype);
                for (const [name, f] of ALGOS) {
                  const r = f(q, kq, vq, { kvLens, causal, returnLse: true }) as AttentionState;
                  const at = `${name} ${dtype} q ${qDtype} Sq ${Sq} causal ${causal}`;
                  const eo = maxAbsDiff(await r.out.data(), ref.out);
                  const el = maxAbsDiff(await r.lse.data(), ref.lse);
                  r.out.dispose();
                  r.lse.dispose();
                  assert(eo <= tol.out, `${at}: out error ${eo} > ${tol.out}`);
                  assert(el <= tol.lse, `${at}: lse error ${el} > ${tol.lse}`);
                }
              }
            } finally {
              freeQ(kq, vq);
            }
          }
        } finally {
          for (const t of [q, k, v]) t.dispose();
        }
      }
    }
  },
);

partsTest(
  "lean over quantized K/V in parts whose keys all lie in the first part: whole-call bits",
  4096,
  async (gpu, whole) => {
    const p = hostProblem(91, { B: 2, Hq: 4, Hkv: 2, Sq: 1, N: 600, D: 8 }, "float32");
    const { B, Hq, Hkv, N, D } = p;
    const make = (b: WebGpuBackend) => ({
      q: tensor(p.q, { shape: [B, Hq, 1, D], backend: b }),
      k: tensor(p.k, { shape: [B, Hkv, N, D], backend: b }),
      v: tensor(p.v, { shape: [B, Hkv, N, D], backend: b }),
    });
    const a = make(gpu), w = make(whole);
    try {
      for (const dtype of FORMATS) {
        const qa = [quantize(a.k, { dtype }), quantize(a.v, { dtype })] as const;
        const qw = [quantize(w.k, { dtype }), quantize(w.v, { dtype })] as const;
        try {
          const kvLens = [100, 37]; // within the first part [0, 128)
          const opts = { kvLens, tileSize: 16, grid: 3 };
          strictEqual(leanAttentionPlan(a.q, qa[0], qa[1], opts).runs.length, 1, "one run");
          const got = leanAttention(a.q, qa[0], qa[1], opts);
          const want = leanAttention(w.q, qw[0], qw[1], opts);
          sameBits(await got.data(), await want.data(), `lean ${dtype}: parts vs whole`);
          got.dispose();
          want.dispose();
        } finally {
          freeQ(...qa, ...qw);
        }
      }
    } finally {
      for (const t of [a.q, a.k, a.v, w.q, w.k, w.v]) t.dispose();
    }
  },
);

// int8 data 9600 B in parts, its scales 4800 B whole when made by hand.
partsTest(
  "quantized K/V in parts: bad input is a named error",
  8192,
  async (gpu) => {
    const [B, Hq, Hkv, N, D] = [1, 2, 2, 600, 8];
    const q = tensor(randomArray(B * Hq * D, 1), { shape: [B, Hq, 1, D], backend: gpu });
    const k = tensor(randomArray(B * Hkv * N * D, 2), { shape: [B, Hkv, N, D], backend: gpu });
    const kq = quantize(k, { dtype: "int8" });
    // Token scales made by hand are stored whole: the part runs cannot bind slices of them.
    const scale = tensor(await kq.scale.data(), { shape: [B, Hkv, N], backend: gpu });
    const byHand = { dtype: "int8" as const, data: kq.data, scale };
    try {
      expectError(
        LimitError,
        () => leanAttention(q, byHand, byHand),
        ["token scales", "same parts", "stored whole"],
        "lean, scales whole",
      );
      expectError(LimitError, () => naiveAttention(q, kq, kq), ["stored across"], "naive");
      // dequantize takes whole scales beside data in parts.
      const [again, want] = [dequantize(byHand), dequantize(kq)];
      sameBits(await again.data(), await want.data(), "dequantize, scales whole");
      again.dispose();
      want.dispose();
    } finally {
      for (const t of [q, k, scale]) t.dispose();
      freeQ(kq);
    }
  },
);
