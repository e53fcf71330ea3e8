/**
 * Peer: ONNX Runtime Web's WebGPU execution provider running com.microsoft
 * `GroupQueryAttention` for one decode step over a static KV cache, on our own GPUDevice.
 *
 * - The model is one GQA node built in memory (`_onnx_proto.ts`), no file on disk.
 * - ORT is handed our device (`executionProviders: [{ name: "webgpu", device }]`), so the
 *   cache, query and output are our GPU buffers bound with `Tensor.fromGpuBuffer`; past_key and
 *   present_key are the same buffer (and likewise V): the static cache, updated in place.
 * - The inputs are the very K, V, q the library's kernels read: the cache is a byte copy of our
 *   K/V (same `[B, Hkv, N, D]` layout and storage), and the one new key/value ORT appends at slot
 *   `len−1` is a copy of our row `len−1`, so its output must equal ours to rounding.
 * - GPU time: ORT's own profiling hooks are not reachable from here, so while ORT runs,
 *   `GPUCommandEncoder.prototype.beginComputePass` is wrapped to add timestamp writes (into our
 *   query set) to every compute pass ORT begins; a run's time is the sum of its passes, the same
 *   rule the library's rows follow.
 * - ORT's files come from the npm cache (`onnxruntime-web`), or from a folder named by
 *   `LEANATTN_ORT_DIR` holding `ort.webgpu.bundle.min.mjs` and
 *   `ort-wasm-simd-threaded.asyncify.{mjs,wasm}` (for hosts without the cache: make it with
 *   `deno run -A bench/peers/ort_webgpu.ts --vendor DIR`).
 *
 * @module
 */

import { gqaDecodeModel } from "./_onnx_proto.ts";

/** The pinned package (keep in step with deno.json). */
export const ORT_PACKAGE = "onnxruntime-web@1.30.0";

// deno-lint-ignore no-explicit-any
type Ort = any;

/** One GQA decode measurement. */
export interface OrtCase {
  B: number;
  Hq: number;
  Hkv: number;
  D: number;
  /** Cache slots per (batch, kv head). */
  N: number;
  /** Valid keys per batch entry (default: N for all). */
  kvLens?: readonly number[];
  dtype: "float16" | "float32";
  /** q `[B, Hq, 1, D]`, K and V `[B, Hkv, N, D]` in our storage (same dtype). */
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  /** Timed runs (default 20) and untimed runs first (default 3). */
  reps?: number;
  warmup?: number;
  /** Runs of the pipelined wall-time loop (default 20). */
  wallCalls?: number;
}

/** What one case gave. */
export interface OrtResult {
  /** Median over runs of the summed compute-pass times, ms (null without timestamps). */
  gpuMs: number | null;
  /** Wall time per run of a loop with one readback at the end, ms. */
  wallMs: number;
  /** Compute passes ORT began per run. */
  passes: number;
  /** Output `[B, Hq, 1, D]` as float32 (for the check against flash). */
  out: Float32Array;
}

/** A loaded peer bound to a device. */
export interface OrtPeer {
  /** ORT version string. */
  version: string;
  /** Runs one case. */
  run(c: OrtCase): Promise<OrtResult>;
}

async function importOrt(): Promise<Ort> {
  const dir = Deno.env.get("LEANATTN_ORT_DIR");
  if (dir) {
    const base = new URL(`file://${await Deno.realPath(dir)}/`);
    const ort = await import(new URL("ort.webgpu.bundle.min.mjs", base).href);
    ort.env.wasm.wasmPaths = base.href;
    return ort;
  }
  return await import("npm:onnxruntime-web@1.30.0/webgpu");
}

/** Loads ORT (WebGPU build) for `device`, or returns why it cannot run here. */
export async function loadOrtPeer(device: GPUDevice): Promise<OrtPeer | { absent: string }> {
  let ort: Ort;
  try {
    ort = await importOrt();
  } catch (e) {
    return { absent: `onnxruntime-web could not be imported: ${msg(e)}` };
  }
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
  if (!device.features.has("timestamp-query")) {
    return { absent: "device lacks timestamp-query (ORT GPU time cannot be taken)" };
  }
  const sessions = new Map<string, Promise<Ort>>();
  const session = (c: OrtCase) => {
    const key = `${c.B}/${c.Hq}/${c.Hkv}/${c.D}/${c.N}/${c.dtype}`;
    let s = sessions.get(key);
    if (!s) {
      // Only one session alive at a time: a cache-sized model holds no weights, but ORT keeps
      // per-session buffer caches.
      for (const old of sessions.values()) old.then((x: Ort) => x.release()).catch(() => {});
      sessions.clear();
      const model = gqaDecodeModel({ ...c, maxSeq: c.N });
      s = ort.InferenceSession.create(model, {
        executionProviders: [{ name: "webgpu", device: withoutSubgroups(device) }],
        graphOptimizationLevel: "disabled",
        preferredOutputLocation: "gpu-buffer",
      }) as Promise<Ort>;
      sessions.set(key, s);
    }
    return s;
  };
  return {
    version: String(ort.env.versions?.web ?? ORT_PACKAGE),
    run: async (c) => runCase(ort, device, await session(c), c),
  };
}

/**
 * The device as ORT should see it: without `subgroups`. ORT's shaders for that feature start
 * with `enable subgroups;`, which Deno's WGSL front end (Naga) rejects, so on a device that
 * has the feature ORT's decode kernels fail to compile. The proxy hides the feature and
 * forwards everything else to the real device (methods bound to it, for WebGPU's brand checks).
 */
export function withoutSubgroups(device: GPUDevice): GPUDevice {
  if (!device.features.has("subgroups" as GPUFeatureName)) return device;
  const features = new Set([...device.features].filter((f) => f !== "subgroups"));
  return new Proxy(device, {
    get(target, prop) {
      if (prop === "features") return features;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Wraps `beginComputePass` to timestamp every pass begun while `active`. */
class PassTimer {
  readonly qs: GPUQuerySet;
  readonly capacity: number;
  active = false;
  /** Run index each recorded pass belongs to. */
  owner: number[] = [];
  run = 0;
  #orig: GPUCommandEncoder["beginComputePass"] | null = null;

  constructor(readonly device: GPUDevice, capacity: number) {
    this.capacity = capacity;
    this.qs = device.createQuerySet({ type: "timestamp", count: 2 * capacity });
  }

  install(): void {
    const proto = GPUCommandEncoder.prototype;
    const orig = proto.beginComputePass;
    this.#orig = orig;
    // deno-lint-ignore no-this-alias
    const self = this;
    proto.beginComputePass = function (
      this: GPUCommandEncoder,
      desc?: GPUComputePassDescriptor,
    ): GPUComputePassEncoder {
      if (self.active && !desc?.timestampWrites && self.owner.length < self.capacity) {
        const i = self.owner.length;
        self.owner.push(self.run);
        desc = {
          ...(desc ?? {}),
          timestampWrites: {
            querySet: self.qs,
            beginningOfPassWriteIndex: 2 * i,
            endOfPassWriteIndex: 2 * i + 1,
          },
        };
      }
      return orig.call(this, desc);
    };
  }

  uninstall(): void {
    if (this.#orig) GPUCommandEncoder.prototype.beginComputePass = this.#orig;
    this.#orig = null;
  }

  /** Per-pass milliseconds of everything recorded, then clears. */
  async read(): Promise<{ owner: number[]; ms: number[] }> {
    const n = this.owner.length;
    const owner = this.owner;
    this.owner = [];
    if (n === 0) return { owner, ms: [] };
    const resolve = this.device.createBuffer({
      size: 16 * n,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = this.device.createBuffer({
      size: 16 * n,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.device.createCommandEncoder();
    enc.resolveQuerySet(this.qs, 0, 2 * n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * n);
    this.device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    resolve.destroy();
    read.destroy();
    const ms: number[] = [];
    for (let i = 0; i < n; i++) ms.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
    return { owner, ms };
  }

  destroy(): void {
    this.uninstall();
    this.qs.destroy();
  }
}

async function readBuffer(device: GPUDevice, src: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const read = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, read, 0, bytes);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const out = read.getMappedRange().slice(0);
  read.unmap();
  read.destroy();
  return out;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function runCase(ort: Ort, device: GPUDevice, sess: Ort, c: OrtCase): Promise<OrtResult> {
  const reps = c.reps ?? 20;
  const warmup = c.warmup ?? 3;
  const wallCalls = c.wallCalls ?? 20;
  const el = c.dtype === "float16" ? 2 : 4;
  const lens = c.kvLens ?? Array(c.B).fill(c.N);
  const row = c.D * el;
  const cacheBytes = c.B * c.Hkv * c.N * row;
  const mk = (bytes: number) => device.createBuffer({ size: Math.max(16, bytes), usage: USAGE });
  const pastK = mk(cacheBytes);
  const pastV = mk(cacheBytes);
  const newK = mk(c.B * c.Hkv * row);
  const newV = mk(c.B * c.Hkv * row);
  const query = mk(c.B * c.Hq * row);
  const output = mk(c.B * c.Hq * row);
  // WebGPU caps a query set at 4096 queries: 2048 passes.
  const timer = new PassTimer(device, Math.min(2048, 64 * (reps + 1)));
  try {
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(c.k, 0, pastK, 0, cacheBytes);
    enc.copyBufferToBuffer(c.v, 0, pastV, 0, cacheBytes);
    enc.copyBufferToBuffer(c.q, 0, query, 0, c.B * c.Hq * row);
    // The token ORT appends at slot len−1 is our row len−1, so the cache ends up unchanged.
    for (let b = 0; b < c.B; b++) {
      if (lens[b] < 1) throw new RangeError("ort-webgpu: GQA needs at least one key per batch");
      for (let h = 0; h < c.Hkv; h++) {
        const src = ((b * c.Hkv + h) * c.N + lens[b] - 1) * row;
        const dst = (b * c.Hkv + h) * row;
        enc.copyBufferToBuffer(c.k, src, newK, dst, row);
        enc.copyBufferToBuffer(c.v, src, newV, dst, row);
      }
    }
    device.queue.submit([enc.finish()]);

    const gpu = (buffer: GPUBuffer, dims: number[]) =>
      ort.Tensor.fromGpuBuffer(buffer, { dataType: c.dtype, dims });
    const cacheDims = [c.B, c.Hkv, c.N, c.D];
    const feeds = {
      query: gpu(query, [c.B, 1, c.Hq * c.D]),
      key: gpu(newK, [c.B, 1, c.Hkv * c.D]),
      value: gpu(newV, [c.B, 1, c.Hkv * c.D]),
      past_key: gpu(pastK, cacheDims),
      past_value: gpu(pastV, cacheDims),
      seqlens_k: new ort.Tensor("int32", Int32Array.from(lens, (l) => l - 1), [c.B]),
      total_sequence_length: new ort.Tensor("int32", Int32Array.of(Math.max(...lens)), [1]),
    };
    const fetches = {
      output: gpu(output, [c.B, 1, c.Hq * c.D]),
      present_key: gpu(pastK, cacheDims),
      present_value: gpu(pastV, cacheDims),
    };
    const once = () => sess.run(feeds, fetches);

    timer.install();
    for (let i = 0; i < warmup; i++) await once();
    timer.active = true;
    for (let i = 0; i < reps; i++) {
      timer.run = i;
      await once();
    }
    timer.active = false;
    const { owner, ms } = await timer.read();
    const perRun = Array(reps).fill(0);
    owner.forEach((r, i) => perRun[r] += ms[i]);
    const counted = perRun.filter((x) => x > 0);
    const gpuMs = ms.length === 0
      ? null
      : counted.length === reps
      ? median(perRun)
      : ms.reduce((a, b) => a + b, 0) / reps;

    // Wall: ORT's run() resolves once its work is submitted (outputs stay on the GPU), so
    // a loop of runs with one readback at the end is pipelined.
    const t0 = performance.now();
    for (let i = 0; i < wallCalls; i++) await once();
    const bytes = await readBuffer(device, output, c.B * c.Hq * row);
    const wallMs = (performance.now() - t0) / wallCalls;
    timer.uninstall();
    const out = c.dtype === "float16"
      ? Float32Array.from(new Float16Array(bytes))
      : new Float32Array(bytes);
    return { gpuMs, wallMs, passes: Math.round(ms.length / reps), out };
  } finally {
    timer.destroy();
    for (const b of [pastK, pastV, newK, newV, query, output]) b.destroy();
  }
}

/** Copies the files ORT's WebGPU build needs from Deno's npm cache into `dir`. */
export async function vendorOrt(dir: string): Promise<string[]> {
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
  })
    .output();
  const npmCache = JSON.parse(new TextDecoder().decode(info.stdout)).npmCache as string;
  const src = `${npmCache}/registry.npmjs.org/${ORT_PACKAGE.replace("@", "/")}/dist`;
  await Deno.mkdir(dir, { recursive: true });
  const files = [
    "ort.webgpu.bundle.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
  ];
  for (const f of files) await Deno.copyFile(`${src}/${f}`, `${dir}/${f}`);
  return files.map((f) => `${dir}/${f}`);
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--vendor");
  if (i >= 0) {
    const out = await vendorOrt(Deno.args[i + 1] ?? ".ort");
    console.log(`copied: ${out.join(", ")}`);
  } else {
    console.log("usage: deno run -A bench/peers/ort_webgpu.ts --vendor DIR");
  }
}
