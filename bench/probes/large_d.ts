// How long does the first attention call take at large head dimensions (#19 item 7)? Per D and
// algorithm, on a fresh WebGPU device each (so every call compiles its own pipelines): the
// milliseconds from the call to its result on the host — planning, WGSL generation, pipeline
// compilation, the run and one readback. Also prints the kernel the plan picked and what a D
// over the device's maximum gives (a LimitError at planning, in milliseconds).
//
//   deno run -A bench/probes/large_d.ts [--d 128,256,512,1024,max] [--algos flash,split,lean]
//     [--kernel sg|wgm|generic] [--default-limits] [--n 64]
//
// `max` is the device's maximum head dimension (maxComputeWorkgroupStorageSize / 16). One query
// row a head, 2 heads, N keys of random data; float32.
import { webgpu, type WebGpuBackend } from "../../backends/webgpu/webgpu_backend.ts";
import { maxHeadDim } from "../../backends/webgpu/attention/generic_kernel.ts";
import { flashAttention } from "../../attention/flash.ts";
import { leanAttention } from "../../attention/lean.ts";
import { tensor } from "../../tensor/creation.ts";
import { normals } from "../../tensor/random.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import type { AttentionTuning } from "../../backends/webgpu/attention/tuning.ts";

/** The value after `--name`, or `def`. */
function arg(name: string, def: string | undefined): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : def;
}
const args = {
  d: arg("d", "128,256,512,1024,max")!,
  algos: arg("algos", "flash,split,lean")!,
  kernel: arg("kernel", undefined),
  n: arg("n", "64")!,
  "default-limits": Deno.args.includes("--default-limits"),
};
const N = Number(args.n);
const algos: Record<string, (q: Tensor, k: Tensor, v: Tensor) => Tensor> = {
  flash: (q, k, v) => flashAttention(q, k, v),
  split: (q, k, v) => flashAttention(q, k, v, { numSplits: 4 }),
  lean: (q, k, v) => leanAttention(q, k, v, { grid: 4 }),
};

async function device(): Promise<WebGpuBackend> {
  const b = await webgpu({ defaultLimits: args["default-limits"] });
  if (args.kernel) {
    b.attentionTuning = { kernel: args.kernel as AttentionTuning["kernel"] };
  }
  return b;
}

const probe = await device();
const max = maxHeadDim(probe.ctx);
console.log(`${probe.description}; max head dimension ${max}; N ${N}`);
probe.destroy();

const dims = args.d.split(",").map((s) => (s === "max" ? max : Number(s)));
for (const D of [...dims, max + 1]) {
  for (const name of args.algos.split(",")) {
    const b = await device();
    const shape = (n: number) => [1, 2, n, D];
    const q = tensor(normals(2 * D, 1), { shape: shape(1), backend: b });
    const k = tensor(normals(2 * N * D, 2), { shape: shape(N), backend: b });
    const v = tensor(normals(2 * N * D, 3), { shape: shape(N), backend: b });
    await q.data();
    const t0 = performance.now();
    let what: string;
    try {
      const out = algos[name](q, k, v);
      const values = await out.data();
      what = values.every(Number.isFinite) ? "ok" : "NON-FINITE";
    } catch (e) {
      what = `${(e as Error).name}: ${(e as Error).message.slice(0, 90)}`;
    }
    const ms = performance.now() - t0;
    console.log(
      `D ${String(D).padStart(5)}  ${name.padEnd(6)} ${ms.toFixed(0).padStart(7)} ms  ${what}`,
    );
    b.destroy();
  }
}
