/**
 * A GPU heater for timing runs: a compute kernel that only spins (dependent multiply-adds on
 * every compute unit, no memory traffic) for a chosen time. A datacenter GPU drops its clock
 * when idle and raises it only under sustained load; the benchmark submits the heater right
 * before a timed run, in queue order, so the timed calls start on a GPU that has been fully
 * busy for ~100 ms instead of one that idled while the CPU encoded them (bench/NOTES.md,
 * "Timing").
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
  /** Iterations per millisecond of GPU time, measured once per device. */
  itersPerMs: number;
}

const heaters = new WeakMap<GPUDevice, Heater>();

function submitSpin(
  device: GPUDevice,
  h: Omit<Heater, "itersPerMs">,
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
 * Submits about `ms` milliseconds of spinning on every compute unit (`groups` workgroups of
 * 256 threads) and returns without waiting: work submitted afterwards runs after it.
 */
export async function heatGpu(device: GPUDevice, ms: number, groups: number): Promise<void> {
  let h = heaters.get(device);
  if (!h) {
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code: HEATER_WGSL }), entryPoint: "main" },
    });
    const sink = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    // Calibrate on a busy GPU: a first spin raises the clock, the second is timed.
    const probe = { pipeline, sink };
    let iters = 1 << 16;
    let wall = 0;
    for (let k = 0; k < 8 && wall < 20; k++) {
      submitSpin(device, probe, iters, groups);
      await device.queue.onSubmittedWorkDone();
      const t0 = performance.now();
      submitSpin(device, probe, iters, groups);
      await device.queue.onSubmittedWorkDone();
      wall = performance.now() - t0;
      if (wall < 20) iters *= 4;
    }
    h = { pipeline, sink, itersPerMs: iters / Math.max(wall, 1e-3) };
    heaters.set(device, h);
  }
  submitSpin(device, h, Math.max(1, Math.round(h.itersPerMs * ms)), groups);
}
