/**
 * A GPU heater for timing runs: a compute kernel that only spins (dependent multiply-adds on
 * every compute unit, no memory traffic) for a chosen time. A datacenter GPU drops its clock
 * when idle and raises it only under sustained load; the benchmark first spins until the
 * clock is up (see {@link heatGpu}), then submits ~100 ms of heater right before a timed run,
 * in queue order, so the timed calls start on a GPU at its top clock instead of one that idled
 * while the CPU encoded them (bench/NOTES.md, "Timing").
 *
 * @module
 */

const HEATER_WGSL = /* wgsl */ `
@group(0) @binding(0) var<uniform> iters: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var x = f32(gid.x) * 1e-7;
  for (var i = 0u; i < iters.x; i++) { x = fma(x, 0.99999994, 1e-7); }
  // Never true for these inputs; keeps the loop from being removed.
  if (x == -1.0) { sink[0] = x; }
}`;

interface Heater {
  pipeline: GPUComputePipeline;
  sink: GPUBuffer;
  /** Iterations of a ramp chunk (grown until a chunk lasts ≥ {@link CHUNK_MS}). */
  chunk: number;
  /** Fastest rate seen on this device, iterations per millisecond of wall time (0: none). */
  itersPerMs: number;
}

/** Wall time of one ramp chunk; long enough that the 10 ms completion polling is noise. */
const CHUNK_MS = 40;
/** Sustained load before the first timed run on a device (the clock's ramp delay, ×2). */
const FIRST_RAMP_MS = 600;
/** Longest ramp before giving up on a faster clock. */
const MAX_RAMP_MS = 3000;

const heaters = new WeakMap<GPUDevice, Heater>();

function submitSpin(
  device: GPUDevice,
  h: Pick<Heater, "pipeline" | "sink">,
  iters: number,
  groups: number,
) {
  const u = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(u, 0, new Uint32Array([iters, 0, 0, 0]));
  const bind = device.createBindGroup({
    layout: h.pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: u } }, {
      binding: 1,
      resource: { buffer: h.sink },
    }],
  });
  const enc = device.createCommandEncoder({ label: "heater" });
  const pass = enc.beginComputePass({ label: "heater" });
  pass.setPipeline(h.pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(groups);
  pass.end();
  device.queue.submit([enc.finish()]);
  u.destroy();
}

/**
 * Brings the GPU to its top clock, then submits about `ms` milliseconds of spinning on every
 * compute unit (`groups` workgroups of 256 threads) and returns without waiting: work
 * submitted afterwards runs after it.
 *
 * The ramp spins in chunks of ≈ {@link CHUNK_MS}, each waited for, until two chunks in a row
 * run within 15 % of the fastest rate this device has shown (on the first call: after at
 * least {@link FIRST_RAMP_MS} of load). An H200 idles at 345 MHz and reaches 1980 only after
 * ≈ 200–300 ms of full load (nvidia-smi at 20 ms, 2026-11-26); a fixed 100 ms heater whose
 * length was calibrated at the idle clock left whole timed rows at 345–615 MHz, 2.7–5× slow
 * (bench/NOTES.md, "Session 2026-11-26 (2)").
 */
export async function heatGpu(device: GPUDevice, ms: number, groups: number): Promise<void> {
  let h = heaters.get(device);
  const first = !h;
  if (!h) {
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code: HEATER_WGSL }), entryPoint: "main" },
    });
    const sink = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    h = { pipeline, sink, chunk: 1 << 14, itersPerMs: 0 };
    heaters.set(device, h);
  }
  const start = performance.now();
  let near = 0;
  while (near < 2) {
    const t0 = performance.now();
    submitSpin(device, h, h.chunk, groups);
    await device.queue.onSubmittedWorkDone();
    const now = performance.now();
    const wall = now - t0;
    if (now - start > MAX_RAMP_MS) break;
    if (wall < CHUNK_MS) {
      h.chunk *= 2;
      continue;
    }
    const rate = h.chunk / wall;
    h.itersPerMs = Math.max(h.itersPerMs, rate);
    const ramped = !first || now - start >= FIRST_RAMP_MS;
    near = ramped && rate >= h.itersPerMs / 1.15 ? near + 1 : 0;
  }
  submitSpin(device, h, Math.max(1, Math.round(h.itersPerMs * ms)), groups);
}
