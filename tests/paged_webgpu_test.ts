/**
 * WebGPU paged attention and page-row primitives. Attention over pages (random page order,
 * unused pages and slots full of NaN, so a kernel that reads one poisons its row) must give
 * exactly the bits of the contiguous call with the same plan — lean, flash and flash-decoding,
 * float32 and float16, GQA, the subgroup, workgroup-memory and generic kernels, several page
 * buffers, each variant. Gather / scatter of page rows must match the host model, including
 * float16 rows of an odd head dim (rows sharing u32 words). No buffer may leak.
 */
import { deepStrictEqual, ok as assert, strictEqual, throws } from "node:assert/strict";
import type { AttentionInputs } from "../backends/backend.ts";
import type { AttentionTuning } from "../backends/webgpu/attention/tuning.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import { leanAttentionPlan } from "../attention/lean.ts";
import { flashAttentionPlan } from "../attention/flash.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { ArgumentError, LimitError, ShapeError } from "../tensor/errors.ts";
import { ownWebgpu, webgpuBackend } from "./_backends.ts";
import { infoOf, pagedPlan, paginate, randomArray, uploadPages } from "./_paged.ts";

const info = infoOf;

interface Case {
  name: string;
  shape: [B: number, Hq: number, Hkv: number, Sq: number, N: number, D: number];
  kvLens: number[];
  pageSize: number;
  dtype?: DType;
  algo?: "lean" | "flash" | "flash-decoding";
  buffers?: number;
  causal?: boolean;
  tuning?: AttentionTuning;
  /** Variant options; `bias` as a host array of `[1, Hq, Sq, N]`, sinks/slopes as arrays. */
  variant?: {
    window?: { left?: number; right?: number };
    softcap?: number;
    sinks?: number[];
    alibiSlopes?: number[];
    bias?: boolean;
  };
}

/** Bits of a float32 array (NaN payloads included). */
const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

async function pagedMatchesContiguous(gpu: WebGpuBackend, c: Case, seed: number): Promise<void> {
  const [B, Hq, Hkv, Sq, N, D] = c.shape;
  const dtype = c.dtype ?? "float32";
  const kvShape = [B, Hkv, N, D];
  const kd = randomArray(B * Hkv * N * D, seed + 1);
  const vd = randomArray(B * Hkv * N * D, seed + 2);
  const made: Tensor[] = [];
  const mk = (x: Float32Array | number[], shape: number[], dt: DType = dtype) => {
    const t = tensor(x, { shape, dtype: dt, backend: gpu });
    made.push(t);
    return t;
  };
  const q = mk(randomArray(B * Hq * Sq * D, seed), [B, Hq, Sq, D]);
  const k = mk(kd, kvShape);
  const v = mk(vd, kvShape);
  const vo = c.variant ?? {};
  const sinks = vo.sinks && mk(vo.sinks, [Hq], "float32");
  const slopes = vo.alibiSlopes && mk(vo.alibiSlopes, [Hq], "float32");
  const bias = vo.bias ? mk(randomArray(Hq * Sq * N, seed + 3), [1, Hq, Sq, N], "float32") : null;
  const opts = {
    kvLens: c.kvLens,
    causal: c.causal ?? false,
    ...(vo.window ? { window: vo.window } : {}),
    ...(vo.softcap ? { softcap: vo.softcap } : {}),
    ...(sinks ? { sinks } : {}),
    ...(slopes ? { alibiSlopes: slopes } : {}),
    ...(bias ? { bias } : {}),
  };
  const inputs: AttentionInputs = {
    ...(sinks ? { sinks: info(sinks) } : {}),
    ...(slopes ? { alibiSlopes: info(slopes) } : {}),
    ...(bias ? { bias: info(bias) } : {}),
  };
  const saved = gpu.attentionTuning;
  gpu.attentionTuning = c.tuning ?? {};
  const hp = paginate(kd, vd, kvShape, c.kvLens, c.pageSize, {
    seed: seed + 4,
    spare: 2,
    buffers: c.buffers ?? 1,
  });
  const up = uploadPages(gpu, hp, kvShape, dtype);
  const ids: unknown[] = [];
  try {
    const algo = c.algo ?? "lean";
    let plan: AttentionPlan;
    if (algo === "lean") plan = leanAttentionPlan(q, k, v, { ...opts, grid: 5, tileSize: 16 });
    else {
      const numSplits = algo === "flash" ? 1 : 3;
      plan = flashAttentionPlan(q, k, v, { ...opts, numSplits, blockN: 16 });
    }
    strictEqual(plan.algo, algo);
    const paged = pagedPlan(gpu, plan, hp.layout);
    const a = gpu.attention(info(q), info(k), info(v), plan, inputs);
    const { kPages, vPages } = up.pages;
    const b = gpu.attention(info(q), kPages[0], vPages[0], paged, {
      ...inputs,
      pages: up.pages,
    });
    ids.push(a.out, a.lse, b.out, b.lse);
    const rows = B * Hq * Sq;
    const [ao, al, bo, bl] = await Promise.all([
      gpu.read(a.out, dtype, rows * D),
      gpu.read(a.lse, "float32", rows),
      gpu.read(b.out, dtype, rows * D),
      gpu.read(b.lse, "float32", rows),
    ]);
    // The contiguous result has no NaN (the data has none), so a NaN read from an unused
    // page or slot would show.
    assert(!ao.some(Number.isNaN), `${c.name}: contiguous out is finite`);
    deepStrictEqual(bits(bo), bits(ao), `${c.name}: out bits`);
    deepStrictEqual(bits(bl), bits(al), `${c.name}: lse bits`);
  } finally {
    gpu.attentionTuning = saved;
    for (const id of ids) gpu.release(id as never);
    up.dispose();
    for (const t of made) t.dispose();
  }
}

const CASES: Case[] = [
  // Lean (stream-K: units cut across workers), page sizes 1 and 3, ragged, GQA, f32.
  { name: "lean ps1 f32 GQA", shape: [2, 4, 2, 1, 40, 64], kvLens: [40, 13], pageSize: 1 },
  {
    name: "lean ps3 f16",
    shape: [2, 2, 2, 1, 70, 64],
    kvLens: [70, 31],
    pageSize: 3,
    dtype: "float16",
  },
  // Flash prefill (causal, several rows a unit), page size 16.
  {
    name: "flash ps16 causal prefill",
    shape: [1, 2, 1, 9, 50, 64],
    kvLens: [50],
    pageSize: 16,
    algo: "flash",
    causal: true,
  },
  // Flash-decoding, page size 64 over two page buffers, and three buffers with f16.
  {
    name: "decoding ps64 NB2",
    shape: [2, 2, 1, 1, 150, 64],
    kvLens: [150, 65],
    pageSize: 64,
    algo: "flash-decoding",
    buffers: 2,
  },
  {
    name: "lean ps3 NB3 f16",
    shape: [2, 4, 2, 1, 60, 64],
    kvLens: [59, 21],
    pageSize: 3,
    dtype: "float16",
    buffers: 3,
  },
  // The generic kernel (D = 24) and the workgroup-memory kernel, paged over 2 buffers.
  {
    name: "generic D24 ps3 NB2",
    shape: [2, 2, 1, 2, 45, 24],
    kvLens: [45, 8],
    pageSize: 3,
    buffers: 2,
  },
  {
    name: "wgm ps16 NB2",
    shape: [2, 2, 1, 1, 90, 64],
    kvLens: [90, 33],
    pageSize: 16,
    buffers: 2,
    tuning: { kernel: "wgm" },
  },
  // Staged tiles and row groups (off by default) through pages.
  {
    name: "staged tiles + row groups",
    shape: [1, 8, 2, 1, 100, 64],
    kvLens: [100],
    pageSize: 16,
    tuning: { ws: true, rs: 2 },
  },
  // Variants: window, soft-cap, sinks, ALiBi, bias (one case each).
  {
    name: "window",
    shape: [1, 2, 1, 3, 64, 64],
    kvLens: [61],
    pageSize: 16,
    causal: true,
    variant: { window: { left: 20 } },
  },
  {
    name: "softcap",
    shape: [1, 2, 2, 1, 50, 64],
    kvLens: [50],
    pageSize: 3,
    variant: { softcap: 2 },
    // The prefetching loop (the next batch loaded before the math).
    tuning: { pf: true, rot: false },
  },
  {
    name: "sinks",
    shape: [2, 2, 1, 1, 40, 64],
    kvLens: [40, 7],
    pageSize: 16,
    variant: { sinks: [0.5, -1] },
  },
  {
    name: "alibi",
    shape: [1, 2, 2, 2, 40, 64],
    kvLens: [40],
    pageSize: 3,
    causal: true,
    variant: { alibiSlopes: [0.1, 0.3] },
  },
  {
    name: "bias",
    shape: [1, 2, 1, 2, 33, 64],
    kvLens: [33],
    pageSize: 16,
    variant: { bias: true },
  },
];

Deno.test({
  name: "webgpu paged attention: the bits of the contiguous call with the same plan",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const before = gpu.memory().liveBytes;
    let seed = 100;
    for (const c of CASES) {
      await t.step(c.name, () => pagedMatchesContiguous(gpu, c, seed += 10));
    }
    strictEqual(gpu.memory().liveBytes, before, "no buffer leaked");
  },
});

Deno.test({
  name: "webgpu paged attention: wrong pages are named errors",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const before = gpu.memory().liveBytes;
    const shape = [1, 1, 20, 32];
    const kd = randomArray(20 * 32, 1);
    const q = tensor(randomArray(32, 2), { shape: [1, 1, 1, 32], backend: gpu });
    const k = tensor(kd, { shape, backend: gpu });
    const hp = paginate(kd, kd, shape, [20], 4, { seed: 3, buffers: 2 });
    const up = uploadPages(gpu, hp, shape, "float32");
    try {
      const plan = pagedPlan(gpu, leanAttentionPlan(q, k, k, { kvLens: [20] }), hp.layout);
      const { kPages, vPages, blockTable } = up.pages;
      throws(() => gpu.attention(info(q), kPages[0], vPages[0], plan, {}), ArgumentError);
      const one = { kPages: kPages.slice(0, 1), vPages, blockTable };
      throws(() => gpu.attention(info(q), kPages[0], vPages[0], plan, { pages: one }), ShapeError);
      throws(
        () => gpu.attention(info(q), vPages[0], vPages[0], plan, { pages: up.pages }),
        ArgumentError,
      );
    } finally {
      up.dispose();
      q.dispose();
      k.dispose();
    }
    strictEqual(gpu.memory().liveBytes, before, "no buffer leaked");
    // WebGPU's default 8 storage buffers a stage: 3 page buffers (12 bindings) do not fit.
    const small = await ownWebgpu({ defaultLimits: true });
    const qs = tensor(randomArray(32, 2), { shape: [1, 1, 1, 32], backend: small });
    const ks = tensor(kd, { shape, backend: small });
    const hp3 = paginate(kd, kd, shape, [20], 2, { seed: 3, buffers: 3 });
    const plan = leanAttentionPlan(qs, ks, ks, { kvLens: [20] });
    throws(() => pagedPlan(small, plan, hp3.layout), LimitError);
    qs.dispose();
    ks.dispose();
  },
});

/** Host model of gather: row (b, h, t) of `[B, H, n, D]` from page row `rows[b·n + t]`. */
function hostGather(
  pages: Float32Array,
  [, H, PS, D]: number[],
  rows: Int32Array,
  B: number,
  n: number,
): Float32Array {
  const out = new Float32Array(B * H * n * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < n; t++) {
        const r = rows[b * n + t];
        if (r < 0) continue;
        const src = ((Math.floor(r / PS) * H + h) * PS + (r % PS)) * D;
        out.set(pages.subarray(src, src + D), ((b * H + h) * n + t) * D);
      }
    }
  }
  return out;
}

Deno.test({
  name: "webgpu page rows: scatter then gather equals the host model (f32, f16 odd D)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const before = gpu.memory().liveBytes;
    const cases = [["float32", 8], ["float16", 5], ["float16", 3], ["int8", 6]] as const;
    for (const [dtype, D] of cases) {
      await t.step(`${dtype} D=${D}`, async () => {
        const [P, H, PS] = [5, 2, 3];
        const pshape = [P, H, PS, D];
        const round = (x: Float32Array) =>
          dtype === "float16"
            ? Float32Array.from(new Float16Array(x))
            : dtype === "int8"
            ? Float32Array.from(x, (y) => Math.round(y * 40))
            : x;
        const init = round(randomArray(P * H * PS * D, D));
        const pages = tensor(init, { shape: pshape, dtype, backend: gpu });
        const [B, n] = [2, 4];
        // Rows written: distinct, some negative (skipped), neighbours sharing u32 words.
        const rows = Int32Array.from([7, 8, -1, 0, 14, 3, 6, -5]);
        const src = round(randomArray(B * H * n * D, D + 50));
        const st = tensor(src, { shape: [B, H, n, D], dtype, backend: gpu });
        const made: unknown[] = [];
        try {
          gpu.scatterPageRows(info(pages), info(st), rows);
          // Host model of the scatter: the inverse of the gather's addressing.
          const want = init.slice();
          for (let b = 0; b < B; b++) {
            for (let h = 0; h < H; h++) {
              for (let s = 0; s < n; s++) {
                const r = rows[b * n + s];
                if (r < 0) continue;
                const dst = ((Math.floor(r / PS) * H + h) * PS + (r % PS)) * D;
                const from = ((b * H + h) * n + s) * D;
                want.set(src.subarray(from, from + D), dst);
              }
            }
          }
          const got = await gpu.read(pages.id, dtype, want.length);
          deepStrictEqual(bits(got), bits(want), "scatter");
          // Gather every row back (and a negative one: zeros).
          const all = Int32Array.from({ length: P * PS + 1 }, (_, i) => (i < P * PS ? i : -1));
          const g = gpu.gatherPageRows(info(pages), all, 1, all.length);
          made.push(g);
          const gv = await gpu.read(g, dtype, H * all.length * D);
          deepStrictEqual(bits(gv), bits(hostGather(want, pshape, all, 1, all.length)), "gather");
          throws(() => gpu.gatherPageRows(info(pages), Int32Array.of(P * PS), 1, 1), ArgumentError);
          throws(() => gpu.scatterPageRows(info(pages), info(st), rows.slice(1)), ShapeError);
        } finally {
          for (const id of made) gpu.release(id as never);
          pages.dispose();
          st.dispose();
        }
      });
    }
    const table = gpu.createIndexTable(Int32Array.from([3, -1, 7]));
    assert(gpu.memory().liveBytes > before, "an index table is counted");
    gpu.release(table);
    strictEqual(gpu.memory().liveBytes, before, "no buffer leaked");
  },
});
