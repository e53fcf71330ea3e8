/**
 * The read-bandwidth ceiling of a device, measured in the same run as the attention rows.
 *
 * Decode attention reads K and V once; nothing can beat streaming those bytes at the device's
 * read bandwidth. This kernel does only that: 256 threads a workgroup, `vec4<u32>` loads in a
 * grid-stride loop unrolled four times (enough loads in flight to saturate HBM), each
 * workgroup's sum reduced with an integer atomic and written out, so no compiler may drop the
 * loads. It reads the very buffers the attention call reads (K and V), so the ceiling is taken
 * at the same byte size, and a size over the binding limit is read as several bindings.
 *
 * Several workgroup counts are tried and the fastest kept: it is a ceiling, not a guess at one
 * occupancy. GPU time comes from timestamp queries at the begin and end of one compute pass per
 * repetition; without `timestamp-query` the wall time of a pipelined loop stands in (and says so).
 *
 * @module
 */

/** One buffer (or byte range of it) to stream. */
export interface ReadRange {
  /** The buffer; needs STORAGE usage. */
  buffer: GPUBuffer;
  /** Byte offset (multiple of the device's `minStorageBufferOffsetAlignment`). Default 0. */
  offset?: number;
  /** Bytes to read from `offset` (rounded down to 16). Default: the rest of the buffer. */
  size?: number;
}

/** What {@link measureCeiling} found. */
export interface CeilingResult {
  /** Bytes read per repetition (sum of the ranges, each rounded down to 16). */
  bytes: number;
  /** Median GPU time of one full read, ms. */
  gpuMs: number;
  /** `bytes / gpuMs` in GB/s (1e9 bytes). */
  gbs: number;
  /** The workgroup count that gave the best median. */
  workgroups: number;
  /** `"timestamp"` when timed by timestamp queries, else `"wall"`. */
  timing: "timestamp" | "wall";
}

/** Options of {@link measureCeiling}. */
export interface CeilingOptions {
  /** Timed repetitions per candidate (default 20). */
  reps?: number;
  /** Untimed repetitions first (default 3). */
  warmup?: number;
  /** Workgroup counts to try (default: 1024, 4096, 16384, 65535, capped by the data). */
  workgroups?: readonly number[];
}

const THREADS = 256;
const UNROLL = 4;

/** WGSL of the streaming read; exported for the smoke test. */
export const CEILING_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sums: array<u32>;
var<workgroup> acc_wg: atomic<u32>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = arrayLength(&src);
  let stride = nwg.x * ${THREADS}u;
  var acc = vec4<u32>(0u);
  var i = gid.x;
  // Four independent loads per trip keep enough requests in flight.
  loop {
    if (i + ${UNROLL - 1}u * stride >= n) { break; }
    let a = src[i];
    let b = src[i + stride];
    let c = src[i + 2u * stride];
    let d = src[i + 3u * stride];
    acc += (a + b) + (c + d);
    i += ${UNROLL}u * stride;
  }
  loop {
    if (i >= n) { break; }
    acc += src[i];
    i += stride;
  }
  if (lid == 0u) { atomicStore(&acc_wg, 0u); }
  workgroupBarrier();
  atomicAdd(&acc_wg, acc.x ^ acc.y ^ acc.z ^ acc.w);
  workgroupBarrier();
  if (lid == 0u) { sums[wid.x] = atomicLoad(&acc_wg); }
}
`;

const pipelines = new WeakMap<GPUDevice, GPUComputePipeline>();

function pipelineFor(device: GPUDevice): GPUComputePipeline {
  let p = pipelines.get(device);
  if (!p) {
    const module = device.createShaderModule({ code: CEILING_WGSL, label: "ceiling" });
    p = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label: "ceiling",
    });
    pipelines.set(device, p);
  }
  return p;
}

/** Splits the ranges into bindings no larger than the device allows (16-byte multiples). */
export function bindingChunks(
  ranges: readonly ReadRange[],
  maxBinding: number,
  align: number,
): { buffer: GPUBuffer; offset: number; size: number }[] {
  const out: { buffer: GPUBuffer; offset: number; size: number }[] = [];
  // Largest chunk that keeps every next offset aligned and a multiple of 16.
  const step = Math.floor(maxBinding / Math.max(align, 16)) * Math.max(align, 16);
  if (step <= 0) {
    throw new RangeError(`bindingChunks: binding limit ${maxBinding} is below alignment ${align}`);
  }
  for (const r of ranges) {
    const start = r.offset ?? 0;
    let left = Math.floor((r.size ?? r.buffer.size - start) / 16) * 16;
    let off = start;
    while (left > 0) {
      const size = Math.min(left, step);
      out.push({ buffer: r.buffer, offset: off, size });
      off += size;
      left -= size;
    }
  }
  return out;
}

/**
 * Streams `ranges` (e.g. the K and V buffers of one attention call) and returns the best median
 * read bandwidth over the workgroup candidates.
 */
export async function measureCeiling(
  device: GPUDevice,
  ranges: readonly ReadRange[],
  opts: CeilingOptions = {},
): Promise<CeilingResult> {
  const reps = opts.reps ?? 20;
  const warmup = opts.warmup ?? 3;
  const chunks = bindingChunks(
    ranges,
    device.limits.maxStorageBufferBindingSize,
    device.limits.minStorageBufferOffsetAlignment,
  );
  const bytes = chunks.reduce((s, c) => s + c.size, 0);
  if (bytes === 0) throw new RangeError("measureCeiling: nothing to read (0 bytes)");
  const maxVec4 = Math.max(...chunks.map((c) => c.size / 16));
  const need = Math.max(1, Math.ceil(maxVec4 / THREADS));
  const cap = device.limits.maxComputeWorkgroupsPerDimension;
  const candidates = [
    ...new Set(
      (opts.workgroups ?? [1024, 4096, 16384, 65535]).map((w) =>
        Math.max(1, Math.min(w, need, cap))
      ),
    ),
  ];

  const pipeline = pipelineFor(device);
  const maxWg = Math.max(...candidates);
  const sums = device.createBuffer({
    size: maxWg * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    label: "ceiling sums",
  });
  const groups = chunks.map((c) =>
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: c.buffer, offset: c.offset, size: c.size } },
        { binding: 1, resource: { buffer: sums } },
      ],
    })
  );
  const timestamps = device.features.has("timestamp-query");
  let best: CeilingResult | null = null;
  try {
    for (const wg of candidates) {
      const ms = timestamps
        ? await timedByTimestamps(device, pipeline, groups, wg, warmup, reps)
        : await timedByWall(device, pipeline, groups, wg, warmup, reps);
      const r: CeilingResult = {
        bytes,
        gpuMs: ms,
        gbs: bytes / (ms * 1e6),
        workgroups: wg,
        timing: timestamps ? "timestamp" : "wall",
      };
      if (!best || r.gpuMs < best.gpuMs) best = r;
    }
  } finally {
    sums.destroy();
  }
  return best!;
}

function encodeRead(
  enc: GPUCommandEncoder,
  pipeline: GPUComputePipeline,
  groups: readonly GPUBindGroup[],
  wg: number,
  timestampWrites?: GPUComputePassTimestampWrites,
): void {
  const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : {});
  pass.setPipeline(pipeline);
  for (const g of groups) {
    pass.setBindGroup(0, g);
    pass.dispatchWorkgroups(wg);
  }
  pass.end();
}

/**
 * Median GPU time (ms) of `pipeline` over `wg` workgroups per bind group, one compute pass a
 * repetition between its begin and end timestamps, after `warmup` untimed passes.
 */
export async function timedByTimestamps(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  groups: readonly GPUBindGroup[],
  wg: number,
  warmup: number,
  reps: number,
): Promise<number> {
  const qs = device.createQuerySet({ type: "timestamp", count: 2 * reps });
  const resolve = device.createBuffer({
    size: 16 * reps,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: 16 * reps,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const enc = device.createCommandEncoder({ label: "ceiling" });
    for (let i = 0; i < warmup; i++) encodeRead(enc, pipeline, groups, wg);
    for (let i = 0; i < reps; i++) {
      encodeRead(enc, pipeline, groups, wg, {
        querySet: qs,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      });
    }
    enc.resolveQuerySet(qs, 0, 2 * reps, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * reps);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    const ms: number[] = [];
    for (let i = 0; i < reps; i++) ms.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
    return median(ms);
  } finally {
    qs.destroy();
    resolve.destroy();
    read.destroy();
  }
}

async function timedByWall(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  groups: readonly GPUBindGroup[],
  wg: number,
  warmup: number,
  reps: number,
): Promise<number> {
  const w = device.createCommandEncoder();
  for (let i = 0; i < warmup; i++) encodeRead(w, pipeline, groups, wg);
  device.queue.submit([w.finish()]);
  await device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  const enc = device.createCommandEncoder();
  for (let i = 0; i < reps; i++) encodeRead(enc, pipeline, groups, wg);
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  return (performance.now() - t0) / reps;
}

/**
 * Runs the read kernel once over one binding-sized range with `workgroups` groups and returns
 * the per-workgroup sums (for the test that proves every word is read exactly once).
 */
export async function ceilingSums(
  device: GPUDevice,
  range: Required<ReadRange>,
  workgroups: number,
): Promise<Uint32Array> {
  const pipeline = pipelineFor(device);
  const sums = device.createBuffer({
    size: workgroups * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: workgroups * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const group = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: range.buffer, offset: range.offset, size: range.size } },
        { binding: 1, resource: { buffer: sums } },
      ],
    });
    const enc = device.createCommandEncoder();
    encodeRead(enc, pipeline, [group], workgroups);
    enc.copyBufferToBuffer(sums, 0, read, 0, workgroups * 4);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const out = new Uint32Array(read.getMappedRange().slice(0));
    read.unmap();
    return out;
  } finally {
    sums.destroy();
    read.destroy();
  }
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
