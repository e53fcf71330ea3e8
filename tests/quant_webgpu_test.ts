/**
 * WebGPU attention over quantized K/V (VARIANTS.md, "Quantized KV"): int8 and float8e4m3
 * bytes, scales per token or per head, dequantized in the kernels. Each call must equal the
 * float64 attention over the dequantized K/V within float32 tolerance — lean, flash and
 * flash-decoding, float32 and float16 q, GQA, ragged lengths, causal prefill, a variant,
 * paged K/V, the subgroup kernel (16-, 8- and 4-byte loads: D 128 with one and with four rows
 * a unit, D 64, D 32; where an adapter has no subgroups these cases run the generic kernel)
 * and the generic kernel (D 24, 64), and the subgroup kernel's held mode with head scales
 * (copies of a score on several lanes, row groups, one-row units; long enough that a later
 * batch raises a row's max, so the held denominators' rescale is exercised). Wrong scale
 * inputs are named errors; no buffer may leak.
 */
import { ok as assert, strictEqual, throws } from "node:assert/strict";
import type { AttentionInputs, TensorInfo } from "../backends/backend.ts";
import type { AttentionTuning } from "../backends/webgpu/attention/tuning.ts";
import type { WebGpuAttentionLaunch } from "../backends/webgpu/attention/plan.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import { leanAttentionPlan } from "../attention/lean.ts";
import { flashAttentionPlan } from "../attention/flash.ts";
import { tensor, zeros } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { ArgumentError, LimitError, ShapeError } from "../tensor/errors.ts";
import { dequantize, quantize } from "../ops/quantize.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { ownWebgpu, webgpuBackend } from "./_backends.ts";
import { infoOf, pagedPlan, paginate, randomArray } from "./_paged.ts";
import { hostQuantize, quantPlan } from "./_quant.ts";
import { decodeE4M3 } from "../tensor/float8.ts";
import { subgroupMinSize } from "../backends/webgpu/attention/subgroup_config.ts";
import { computeUnits } from "../backends/webgpu/attention/cost_model.ts";
import { QUANT_E4M3_MHA_WG, QUANT_GQA_WG } from "../backends/webgpu/attention/tuning.ts";
import {
  decodeScale,
  dequantWord,
  quantBindings,
} from "../backends/webgpu/attention/_wgsl_quant.ts";

const info = infoOf;

interface Case {
  name: string;
  shape: [B: number, Hq: number, Hkv: number, Sq: number, N: number, D: number];
  kvLens?: number[];
  fmt: "int8" | "float8e4m3";
  sc: "token" | "head";
  q?: "float32" | "float16";
  algo?: "lean" | "flash" | "flash-decoding";
  causal?: boolean;
  tuning?: AttentionTuning;
  /** Page size: K/V in pages (int8 quantized per token, two page buffers). */
  paged?: number;
  /** Sinks, soft-cap and a left window. */
  variant?: boolean;
  /** The main kernel the case must take ("sg" only where the adapter has subgroups). */
  kernel: "sg" | "generic";
}

const launchOf = (plan: AttentionPlan) =>
  (plan.runs[0].prepared as { launch: WebGpuAttentionLaunch }).launch;

async function quantMatchesReference(gpu: WebGpuBackend, c: Case, seed: number): Promise<void> {
  const [B, Hq, Hkv, Sq, N, D] = c.shape;
  const qDtype = c.q ?? "float32";
  const kvShape = [B, Hkv, N, D];
  const kvLens = c.kvLens ?? Array(B).fill(N);
  const kd = randomArray(B * Hkv * N * D, seed + 1);
  const vd = randomArray(B * Hkv * N * D, seed + 2);
  const made: Tensor[] = [];
  const mk = (x: ArrayLike<number>, shape: number[], dtype: string = "float32") => {
    const t = tensor(Array.from(x), { shape, dtype: dtype as never, backend: gpu });
    made.push(t);
    return t;
  };
  const ids: unknown[] = [];
  const saved = gpu.attentionTuning;
  gpu.attentionTuning = c.tuning ?? {};
  try {
    const q = mk(randomArray(B * Hq * Sq * D, seed), [B, Hq, Sq, D], qDtype);
    const kf = mk(kd, kvShape);
    const vf = mk(vd, kvShape);
    // The float plan's K/V (of q's dtype, as attention takes them): only their shape matters.
    const kP = qDtype === "float32" ? kf : mk(kd, kvShape, qDtype);
    const sinkVals = [0.5, -1, 2, 0.25].slice(0, Hq);
    const sinks = c.variant ? mk(sinkVals, [Hq]) : null;
    const vopts = c.variant ? { sinks: sinks!, softcap: 5, window: { left: 20 } } : {};
    const opts = { kvLens, causal: c.causal ?? false, ...vopts };
    const algo = c.algo ?? "lean";
    let plan = algo === "lean"
      ? leanAttentionPlan(q, kP, kP, { ...opts, grid: 5, tileSize: 16 })
      : flashAttentionPlan(q, kP, kP, { ...opts, numSplits: algo === "flash" ? 1 : 3, blockN: 16 });
    strictEqual(plan.algo, algo);
    // Quantized K/V and the float64 values they stand for.
    let kq: TensorInfo, vq: TensorInfo;
    let kDeq: ArrayLike<number>, vDeq: ArrayLike<number>;
    const inputs: { -readonly [K in keyof AttentionInputs]: AttentionInputs[K] } = sinks
      ? { sinks: info(sinks) }
      : {};
    const native = (c.fmt === "int8") === (c.sc === "token");
    if (c.paged) {
      const ps = c.paged;
      const hk = hostQuantize(kd, kvShape, c.fmt, "token");
      const hv = hostQuantize(vd, kvShape, c.fmt, "token");
      [kDeq, vDeq] = [hk.deq, hv.deq];
      const opt = { seed: seed + 4, spare: 2, buffers: 2 };
      const codes = paginate(hk.values, hv.values, kvShape, kvLens, ps, opt);
      const scales = paginate(hk.scale, hv.scale, [B, Hkv, N, 1], kvLens, ps, opt);
      // Slots without a token: code 0 with a NaN scale (a kernel that reads one poisons its row).
      const page = (x: Float32Array) =>
        mk(x.map((y) => Number.isNaN(y) ? 0 : y), [x.length / (Hkv * ps * D), Hkv, ps, D], c.fmt);
      const scale = (x: Float32Array) => mk(x, [x.length / (Hkv * ps), Hkv, ps]);
      const kp = codes.k.map(page), vp = codes.v.map(page);
      const bt = gpu.createIndexTable!(codes.blockTable);
      ids.push(bt);
      inputs.pages = {
        kPages: kp.map(info),
        vPages: vp.map(info),
        blockTable: bt,
        kScalePages: scales.k.map(scale).map(info),
        vScalePages: scales.v.map(scale).map(info),
      };
      [kq, vq] = [info(kp[0]), info(vp[0])];
      plan = pagedPlan(gpu, plan, codes.layout);
    } else if (native) {
      // la.quantize's own formats: int8 per token, float8e4m3 per head.
      const [qk, qv] = [quantize(kf, { dtype: c.fmt }), quantize(vf, { dtype: c.fmt })];
      made.push(qk.data, qk.scale, qv.data, qv.scale);
      const [dk, dv] = [dequantize(qk), dequantize(qv)];
      made.push(dk, dv);
      [kDeq, vDeq] = await Promise.all([dk.data(), dv.data()]) as Float32Array[];
      [kq, vq] = [info(qk.data), info(qv.data)];
      inputs.kScale = info(qk.scale);
      inputs.vScale = info(qv.scale);
    } else {
      const sShape = c.sc === "token" ? [B, Hkv, N] : [B, Hkv];
      const [hk, hv] = [
        hostQuantize(kd, kvShape, c.fmt, c.sc),
        hostQuantize(vd, kvShape, c.fmt, c.sc),
      ];
      [kDeq, vDeq] = [hk.deq, hv.deq];
      [kq, vq] = [info(mk(hk.values, kvShape, c.fmt)), info(mk(hv.values, kvShape, c.fmt))];
      inputs.kScale = info(mk(hk.scale, sShape));
      inputs.vScale = info(mk(hv.scale, sShape));
    }
    const qp = quantPlan(gpu, plan, c.fmt, c.paged ? "token" : c.sc);
    const kind = launchOf(qp).main!.kernel.kind;
    // A subgroup case takes the subgroup kernel wherever the float plan of its shape does (a
    // 32-lane adapter has no subgroup configuration for some prefill shapes at all).
    const want = c.kernel === "sg" ? launchOf(plan).main!.kernel.kind : c.kernel;
    strictEqual(kind, want, `${c.name}: kernel`);
    const r = gpu.attention(info(q), kq, vq, qp, inputs);
    ids.push(r.out, r.lse);
    const rows = B * Hq * Sq;
    const [out, lse, qv] = await Promise.all([
      gpu.read(r.out, qDtype, rows * D),
      gpu.read(r.lse, "float32", rows),
      q.data() as Promise<Float32Array>,
    ]);
    const ref = referenceAttention({
      q: qv,
      k: kDeq,
      v: vDeq,
      B,
      Hq,
      Hkv,
      Sq,
      N,
      D,
      causal: c.causal ?? false,
      kvLens,
      ...(c.variant ? { sinks: sinkVals, softcap: 5, window: { left: 20 } } : {}),
    });
    const tol = attentionTolerances(ref, N, qDtype);
    const eo = maxAbsDiff(out, ref.out);
    const el = maxAbsDiff(lse, ref.lse);
    assert(eo <= tol.out, `${c.name}: out error ${eo} > ${tol.out}`);
    assert(el <= tol.lse, `${c.name}: lse error ${el} > ${tol.lse}`);
  } finally {
    gpu.attentionTuning = saved;
    for (const id of ids) gpu.release(id as never);
    for (const t of made) t.dispose();
  }
}

const GENERIC: AttentionTuning = { kernel: "generic" };

const CASES: Case[] = [
  {
    name: "lean int8/token f32 GQA ragged (subgroup)",
    shape: [2, 4, 2, 1, 50, 64],
    kvLens: [50, 17],
    fmt: "int8",
    sc: "token",
    kernel: "sg",
  },
  {
    name: "flash e4m3/head f16 (subgroup, D 128: 16 bytes a load)",
    shape: [1, 2, 2, 1, 40, 128],
    fmt: "float8e4m3",
    sc: "head",
    q: "float16",
    algo: "flash",
    kernel: "sg",
  },
  {
    name: "flash-decoding int8/head f32 GQA 4 (subgroup, D 128)",
    shape: [1, 8, 2, 1, 70, 128],
    kvLens: [61],
    fmt: "int8",
    sc: "head",
    algo: "flash-decoding",
    kernel: "sg",
  },
  // Held mode (multi-row units, head scales: each lane keeps the denominators and applies
  // the scales of the scores it holds after the butterfly, _wgsl_probabilities.ts).
  {
    name: "lean e4m3/head GQA 4 ragged, held mode, one key a slot (copies of each score)",
    shape: [2, 8, 2, 1, 70, 64],
    kvLens: [70, 23],
    fmt: "float8e4m3",
    sc: "head",
    tuning: { U: 1 },
    kernel: "sg",
  },
  {
    name: "lean int8/head GQA 4, held mode over two row groups",
    shape: [1, 8, 2, 1, 900, 64],
    fmt: "int8",
    sc: "head",
    tuning: { rs: 2 },
    kernel: "sg",
  },
  {
    name: "flash e4m3/head one-row units, held mode, two keys a slot",
    shape: [2, 2, 2, 1, 600, 64],
    kvLens: [12, 600],
    fmt: "float8e4m3",
    sc: "head",
    algo: "flash",
    tuning: { U: 2 },
    kernel: "sg",
  },
  {
    name: "lean int8/head GQA sinks + softcap + window, held mode",
    shape: [1, 4, 1, 1, 700, 32],
    fmt: "int8",
    sc: "head",
    variant: true,
    kernel: "sg",
  },
  {
    name: "lean e4m3/token f16 GQA (generic)",
    shape: [2, 4, 2, 1, 33, 64],
    kvLens: [9, 33],
    fmt: "float8e4m3",
    sc: "token",
    q: "float16",
    tuning: GENERIC,
    kernel: "generic",
  },
  {
    name: "flash-decoding int8/head D 24 (generic)",
    shape: [2, 2, 1, 1, 45, 24],
    kvLens: [45, 20],
    fmt: "int8",
    sc: "head",
    algo: "flash-decoding",
    kernel: "generic",
  },
  {
    name: "flash causal prefill int8/token (subgroup, tail mask)",
    shape: [1, 2, 1, 5, 37, 64],
    fmt: "int8",
    sc: "token",
    algo: "flash",
    causal: true,
    kernel: "sg",
  },
  {
    name: "lean paged int8/token ps 3, two page buffers, GQA (subgroup)",
    shape: [2, 4, 2, 1, 40, 64],
    kvLens: [40, 13],
    fmt: "int8",
    sc: "token",
    paged: 3,
    kernel: "sg",
  },
  {
    name: "lean paged e4m3/token (generic)",
    shape: [1, 2, 1, 1, 30, 24],
    fmt: "float8e4m3",
    sc: "token",
    paged: 4,
    kernel: "generic",
  },
  {
    name: "lean int8/token sinks + softcap + window (subgroup)",
    shape: [1, 4, 2, 1, 60, 32],
    fmt: "int8",
    sc: "token",
    variant: true,
    kernel: "sg",
  },
  // The wide defaults' workgroups (QUANT_E4M3_MHA_WG, QUANT_GQA_WG) on short K/V.
  {
    name: "lean e4m3/token one-row units in 384 threads, D 128",
    shape: [2, 2, 2, 1, 300, 128],
    kvLens: [300, 77],
    fmt: "float8e4m3",
    sc: "token",
    tuning: { wg: 384 },
    kernel: "sg",
  },
  {
    name: "lean int8/token GQA 4 in 384 threads, D 128",
    shape: [1, 8, 2, 1, 260, 128],
    fmt: "int8",
    sc: "token",
    tuning: { wg: 384 },
    kernel: "sg",
  },
  {
    name: "lean e4m3/head rotated loop off, prefetch on (subgroup)",
    shape: [1, 8, 2, 1, 48, 64],
    fmt: "float8e4m3",
    sc: "head",
    tuning: { pf: true, rot: false },
    kernel: "sg",
  },
];

Deno.test({
  name: "webgpu attention over quantized K/V equals float64 attention over the dequantized K/V",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    if (!gpu.ctx.features.subgroups) {
      console.warn("  (no subgroups: sg cases run the generic kernel)");
    }
    const before = gpu.memory().liveBytes;
    let seed = 700;
    for (const c of CASES) {
      await t.step(c.name, () => quantMatchesReference(gpu, c, seed += 10));
    }
    strictEqual(gpu.memory().liveBytes, before, "no buffer leaked");
  },
});

Deno.test({
  name:
    "webgpu quantized GQA-4 and float8e4m3 one-row decode run in wider workgroups where allowed; float, int8 one-row and batch-invariant in 256",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const made: Tensor[] = [];
    const mk = (shape: number[]) => {
      const x = randomArray(shape.reduce((a, b) => a * b), made.length);
      const t = tensor(x, { shape, dtype: "float16", backend: gpu });
      made.push(t);
      return t;
    };
    try {
      const lim = gpu.ctx.limits;
      const minSg = subgroupMinSize(gpu.ctx) ?? 8;
      const allowed = (wg: number) =>
        minSg >= 8 && wg % minSg === 0 && wg <= lim.maxComputeInvocationsPerWorkgroup &&
        wg <= lim.maxComputeWorkgroupSizeX;
      const key = (plan: AttentionPlan) => launchOf(plan).main!.key;
      const wgOf = (plan: AttentionPlan) => /:wg(\d+):/.exec(key(plan))?.[1];
      // The rule for a unit of `rows` rows in `fmt` (null: always 256).
      const ruleOf = (rows: number, fmt: "int8" | "float8e4m3") =>
        rows === 4 ? QUANT_GQA_WG : rows === 1 && fmt === "float8e4m3" ? QUANT_E4M3_MHA_WG : null;
      // One worker a unit: QUANT_GQA_WG.keysOver + 64 keys a worker (wide for GQA-4 and e4m3
      // one-row); two: half that (wide for e4m3 one-row only); four: a quarter (256 for both).
      const N = QUANT_GQA_WG.keysOver + 64;
      assert(N / 2 > QUANT_E4M3_MHA_WG.keysOver && N / 4 <= QUANT_E4M3_MHA_WG.keysOver);
      let checked = 0;
      for (const [Hq, Hkv] of [[8, 2], [4, 4], [16, 2]]) {
        const q = mk([1, Hq, 1, 128]);
        const k = mk([1, Hkv, N, 128]);
        for (const grid of [Hkv, 2 * Hkv, 4 * Hkv]) {
          const keys = N * Hkv / grid;
          const at = `Hq ${Hq}, Hkv ${Hkv}, ${keys} keys a worker`;
          for (const fmt of ["int8", "float8e4m3"] as const) {
            const rule = ruleOf(Hq / Hkv, fmt);
            const wide = rule !== null && keys > rule.keysOver && allowed(rule.wg);
            const want = wide ? String(rule.wg) : "256";
            const lean = quantPlan(gpu, leanAttentionPlan(q, k, k, { grid }), fmt, "token");
            if (!key(lean).startsWith("attn-sg")) continue; // no subgroup kernel on this adapter
            strictEqual(wgOf(lean), want, `${at} ${fmt}: ${key(lean)}`);
            checked++;
          }
          const float = leanAttentionPlan(q, k, k, { grid });
          if (key(float).startsWith("attn-sg")) strictEqual(wgOf(float), "256", `${at} float16`);
        }
        for (const fmt of ["int8", "float8e4m3"] as const) {
          const inv = quantPlan(
            gpu,
            leanAttentionPlan(q, k, k, { batchInvariant: true }),
            fmt,
            "token",
          );
          if (key(inv).startsWith("attn-sg")) {
            strictEqual(wgOf(inv), "256", `Hq ${Hq} ${fmt} invariant`);
          }
        }
      }
      // float8e4m3 one-row with long runs on more than `workersPerCu` workers a compute unit:
      // 256 (384 lost 8–15 % on 512 workers of an H100); on exactly that many, wide.
      const e4m3 = QUANT_E4M3_MHA_WG;
      const most = e4m3.workersPerCu! * computeUnits(gpu.ctx);
      const Hkv = 4;
      const over = most + Hkv;
      const Nlong = Math.ceil((e4m3.keysOver * over) / Hkv) + 64;
      const q = zeros([1, Hkv, 1, 128], { dtype: "float16", backend: gpu });
      const k = zeros([1, Hkv, Nlong, 128], { dtype: "float16", backend: gpu });
      made.push(q, k);
      for (const grid of [most, over]) {
        const lean = quantPlan(gpu, leanAttentionPlan(q, k, k, { grid }), "float8e4m3", "token");
        if (!key(lean).startsWith("attn-sg")) continue;
        const want = grid <= most && allowed(e4m3.wg) ? String(e4m3.wg) : "256";
        strictEqual(wgOf(lean), want, `e4m3 one-row on ${grid} workers (${most} at most wide)`);
        checked++;
      }
      if (gpu.ctx.features.subgroups) {
        assert(checked > 0, "no quantized plan took the subgroup kernel");
      }
    } finally {
      for (const t of made) t.dispose();
    }
  },
});

Deno.test({
  name: "webgpu quantized attention: missing or wrong scales are named errors, nothing leaks",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const before = gpu.memory().liveBytes;
    const [B, H, N, D] = [1, 2, 16, 32];
    const q = tensor(randomArray(B * H * D, 1), { shape: [B, H, 1, D], backend: gpu });
    const kf = tensor(randomArray(B * H * N * D, 2), { shape: [B, H, N, D], backend: gpu });
    const qt = quantize(kf, { dtype: "int8" });
    const bad = tensor(new Float32Array(B * H), { shape: [B, H], backend: gpu });
    try {
      const plan = quantPlan(gpu, leanAttentionPlan(q, kf, kf, {}), "int8", "token");
      const k = info(qt.data);
      throws(() => gpu.attention(info(q), k, k, plan, {}), ArgumentError);
      throws(
        () => gpu.attention(info(q), k, k, plan, { kScale: info(qt.scale), vScale: info(bad) }),
        ShapeError,
      );
      // Scales given to a float plan.
      const fp = leanAttentionPlan(q, kf, kf, {});
      throws(
        () => gpu.attention(info(q), info(kf), info(kf), fp, { kScale: info(bad) }),
        ArgumentError,
      );
      // The workgroup-memory kernel takes float K/V only: asked for, another kernel runs.
      const saved = gpu.attentionTuning;
      gpu.attentionTuning = { kernel: "wgm" };
      try {
        const wp = quantPlan(gpu, leanAttentionPlan(q, kf, kf, {}), "int8", "token");
        assert(launchOf(wp).main!.kernel.kind !== "wgm", "no workgroup-memory kernel");
      } finally {
        gpu.attentionTuning = saved;
      }
    } finally {
      for (const t of [q, kf, qt.data, qt.scale, bad]) t.dispose();
    }
    strictEqual(gpu.memory().liveBytes, before, "no buffer leaked");
    // WebGPU's default 8 storage buffers a stage: the kernels' 7 and two scale buffers do not
    // fit, a LimitError at planning (not a GPU validation error).
    const small = await ownWebgpu({ defaultLimits: true });
    const qs = tensor(randomArray(D, 3), { shape: [1, 1, 1, D], backend: small });
    const ks = tensor(randomArray(N * D, 4), { shape: [1, 1, N, D], backend: small });
    try {
      const plan = leanAttentionPlan(qs, ks, ks, {});
      throws(() => quantPlan(small, plan, "int8", "token"), LimitError);
    } finally {
      qs.dispose();
      ks.dispose();
      small.destroy();
    }
  },
});

Deno.test({
  name: "webgpu quantized K/V decoders: every int8 and E4M3 code (subnormals, ±0, NaN)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const device = gpu.ctx.device;
    for (const [fmt, viaHalf] of [["i8", false], ["i8", true], ["e4m3", false]] as const) {
      // The kernels' decoder over the 64 words holding the codes 0..255 (byte i of word w is
      // code 4w + i).
      const code = `${quantBindings({ fmt, sc: "token" }, null, 5)}
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read_write> Y: array<vec4<f32>>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  Y[g.x] = ${dequantWord({ fmt, sc: "token" }, "W[g.x]", viaHalf)};
}`;
      const words = new Uint32Array(64);
      new Uint8Array(words.buffer, 0, 256).set(Array.from({ length: 256 }, (_, c) => c));
      const wb = device.createBuffer({
        size: words.byteLength,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(wb, 0, words);
      const yb = device.createBuffer({
        size: 1024,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
      });
      const rb = device.createBuffer({
        size: 1024,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      try {
        const pipe = device.createComputePipeline({
          layout: "auto",
          compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
        });
        const bind = device.createBindGroup({
          layout: pipe.getBindGroupLayout(0),
          entries: [{ binding: 0, resource: { buffer: wb } }, {
            binding: 1,
            resource: { buffer: yb },
          }],
        });
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipe);
        pass.setBindGroup(0, bind);
        pass.dispatchWorkgroups(1);
        pass.end();
        enc.copyBufferToBuffer(yb, 0, rb, 0, 1024);
        device.queue.submit([enc.finish()]);
        await rb.mapAsync(GPUMapMode.READ);
        const y = new Float32Array(rb.getMappedRange().slice(0));
        rb.unmap();
        for (let c = 0; c < 256; c++) {
          // The decoders' values are the codes' over decodeScale (the scales carry it).
          const want = (fmt === "i8" ? (c << 24) >> 24 : decodeE4M3(c)) /
            decodeScale({ fmt, sc: "token" });
          assert(
            Object.is(y[c], want),
            `${fmt}${viaHalf ? " via float16" : ""} code ${c}: got ${y[c]}, want ${want}`,
          );
        }
      } finally {
        for (const b of [wb, yb, rb]) b.destroy();
      }
    }
  },
});
