/**
 * What a dispatch costs on this device through wgpu: a chain of tiny dispatches (y = x + 1 over
 * 4,096 floats, 16 workgroups) timed by one pair of timestamps around the whole chain, with
 * each dispatch in its own compute pass (as the library encoded ops until 2026-11-26) or all
 * in one pass (as it does now), and with each dispatch depending on the previous one
 * (ping-pong between two buffers: wgpu puts a barrier between them) or not (every dispatch
 * reads one buffer and writes its own).
 *
 *     deno run -A bench/probes/dispatch.ts [--n 200] [--json FILE]
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { median } from "../_ceiling.ts";

const WGSL = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&y)) { y[g.x] = x[g.x] + 1.0; }
}`;

if (import.meta.main) {
  const gpu = await webgpu();
  const device = gpu.ctx.device;
  console.log(`adapter: ${gpu.description}`);
  const ni = Deno.args.indexOf("--n");
  const n = ni >= 0 ? Number(Deno.args[ni + 1]) : 200;
  const module = device.createShaderModule({ code: WGSL });
  const pipe = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const buf = () =>
    device.createBuffer({
      size: 4096 * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
  const a = buf();
  const b = buf();
  const outs = Array.from({ length: n }, buf);
  const bg = (x: GPUBuffer, y: GPUBuffer) =>
    device.createBindGroup({
      layout: pipe.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: x } }, { binding: 1, resource: { buffer: y } }],
    });
  const chained = Array.from({ length: n }, (_, i) => (i % 2 ? bg(b, a) : bg(a, b)));
  const independent = outs.map((o) => bg(a, o));
  const qs = device.createQuerySet({ type: "timestamp", count: 2 });
  const res = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const rd = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const time = async (groups: GPUBindGroup[], onePass: boolean): Promise<number> => {
    const enc = device.createCommandEncoder();
    // Warm-up work ahead in the same submission keeps the clock up.
    for (let i = 0; i < 2000; i++) {
      const p = enc.beginComputePass();
      p.setPipeline(pipe);
      p.setBindGroup(0, independent[i % n]);
      p.dispatchWorkgroups(16);
      p.end();
    }
    const tw = (i: number, last: number): GPUComputePassDescriptor => ({
      timestampWrites: {
        querySet: qs,
        ...(i === 0 ? { beginningOfPassWriteIndex: 0 } : {}),
        ...(i === last ? { endOfPassWriteIndex: 1 } : {}),
      },
    });
    if (onePass) {
      const p = enc.beginComputePass(tw(0, 0));
      p.setPipeline(pipe);
      for (const g of groups) {
        p.setBindGroup(0, g);
        p.dispatchWorkgroups(16);
      }
      p.end();
    } else {
      groups.forEach((g, i) => {
        const p = enc.beginComputePass(
          i === 0 || i === groups.length - 1 ? tw(i, groups.length - 1) : {},
        );
        p.setPipeline(pipe);
        p.setBindGroup(0, g);
        p.dispatchWorkgroups(16);
        p.end();
      });
    }
    enc.resolveQuerySet(qs, 0, 2, res, 0);
    enc.copyBufferToBuffer(res, 0, rd, 0, 16);
    device.queue.submit([enc.finish()]);
    await rd.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(rd.getMappedRange().slice(0));
    rd.unmap();
    return Number(t[1] - t[0]) / 1e3 / groups.length;
  };
  const out: Record<string, number> = {};
  for (
    const [name, groups, one] of [
      ["dependent, a pass each", chained, false],
      ["dependent, one pass", chained, true],
      ["independent, a pass each", independent, false],
      ["independent, one pass", independent, true],
    ] as [string, GPUBindGroup[], boolean][]
  ) {
    const xs = [];
    for (let r = 0; r < 5; r++) xs.push(await time(groups, one));
    out[name] = median(xs);
    if (groups === chained) {
      // Each timed chain adds n to every element (y = x + 1, n times, ping-pong): if the
      // dispatches ran in order the two buffers hold values n apart that grew by 5n.
      const rb = device.createBuffer({
        size: 8,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(a, 0, rb, 0, 4);
      enc.copyBufferToBuffer(b, 0, rb, 4, 4);
      device.queue.submit([enc.finish()]);
      await rb.mapAsync(GPUMapMode.READ);
      const [va, vb] = new Float32Array(rb.getMappedRange().slice(0));
      rb.unmap();
      rb.destroy();
      console.log(`  after it: a[0] = ${va}, b[0] = ${vb}`);
    }
    console.log(`${out[name].toFixed(2).padStart(6)} µs a dispatch  ${name} (${n} dispatches)`);
  }
  const ji = Deno.args.indexOf("--json");
  if (ji >= 0) await Deno.writeTextFile(Deno.args[ji + 1], JSON.stringify(out, null, 1));
}
