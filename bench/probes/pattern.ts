/**
 * Does the decode kernel's access pattern cap its bandwidth? Streams two buffers (K and V of
 * one attention call's size) the way the attention kernels read them — every workgroup its own
 * contiguous range of both, a batch of loads per thread per loop trip, the next batch only
 * after the last one arrived — and compares with the grid-stride ceiling of bench/_ceiling.ts
 * on the same buffers, all timed by timestamp queries around one pass per repetition.
 *
 *     deno run -A bench/probes/pattern.ts [--mb 268,1074] [--json FILE]
 *
 * Knobs per row: `W` workgroups (128: one a multiprocessor, as the GQA decode kernel runs;
 * 256: two, as MHA), `U` loads of K and of V per thread per trip (the kernel's keys a slot: 8
 * → 64 KB a workgroup in flight), `S` streams a workgroup: 1 = each trip reads one contiguous
 * chunk of the workgroup's range (the kernel now), 16 = each group of 16 threads its own
 * contiguous sub-range (16 slots, each streaming its own keys); `P` > 0 adds touches: one u32
 * load a 32-byte sector of the chunk P trips ahead, so it is in L2 when its real loads come;
 * `Z` = 1 skews where each workgroup starts in its range (trip wid·37 mod trips, wrapping
 * around), so workgroups whose ranges are a power of two apart do not hit the same memory
 * channels in lockstep.
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { measureCeiling, timedByTimestamps } from "../_ceiling.ts";

const T = 256;

export function patternWgsl(U: number, S: number, P = 0, skew = false): string {
  const G = T / S; // threads a stream
  const loads = [...Array(U).keys()];
  // Touches (P > 0, S = 1): each trip, one u32 a 32-byte sector of the chunk P trips ahead
  // (U / 2 a thread a tensor), consumed one trip later, so the sectors reach L2 early while
  // holding one register a sector instead of eight.
  const nt = P > 0 ? Math.max(1, U / 2) : 0;
  const tj = [...Array(nt).keys()];
  return `
@group(0) @binding(0) var<storage, read> K: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> V: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> sums: array<u32>;
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = arrayLength(&K);
  let per = n / nwg.x;            // vec4s of each tensor a workgroup reads
  let sub = per / ${S}u;          // … a stream reads
  let s = lid / ${G}u;
  let t = lid % ${G}u;
  let start = wid.x * per + s * sub;
  let end = start + sub;
  var acc = vec4<u32>(0u);
  var tacc = 0u;
${
    tj.map((j) =>
      `  var tk${j} = 0u;
  var tv${j} = 0u;`
    ).join("\n")
  }
  // skew: the workgroup starts its range (${U * G} vec4s a trip) at trip wid·37 mod trips and
  // wraps around (pass 1: from there to the end, pass 2: the start up to there).
  let trips = sub / ${U * G}u;
  let rot = ${skew ? `select(0u, (wid.x * 37u) % max(trips, 1u), trips > 0u)` : "0u"};
  var i = start + rot * ${U * G}u + t;
  var stop = start + trips * ${U * G}u;
  for (var ph = 0u; ph < 2u; ph++) {
  loop {
    if (i + ${(U - 1) * G}u >= stop) { break; }
${
    loads.map((u) => `    let k${u} = K[i + ${u * G}u];\n    let v${u} = V[i + ${u * G}u];`).join(
      "\n",
    )
  }
${
    tj.map((j) =>
      `    tacc ^= tk${j} ^ tv${j};
    let ti${j} = min(i - t + ${P * U * G}u + 2u * (t + ${j * T}u), end - 1u);
    tk${j} = K[ti${j}].x;
    tv${j} = V[ti${j}].x;`
    ).join("\n")
  }
    acc += ${loads.map((u) => `(k${u} ^ v${u})`).join(" + ")};
    i += ${U * G}u;
  }
  i = start + t;
  stop = start + rot * ${U * G}u;
  if (rot == 0u) { break; }
  }
  i = start + trips * ${U * G}u + t;
  loop {
    if (i >= end) { break; }
    acc += K[i] ^ V[i];
    i += ${G}u;
  }
${tj.map((j) => `  tacc ^= tk${j} ^ tv${j};`).join("\n")}
  let x = acc.x ^ acc.y ^ acc.z ^ acc.w ^ tacc;
  if (x == 0x9e3779b9u) { sums[wid.x * ${T}u + lid] = x; }
}
`;
}

if (import.meta.main) {
  const gpu = await webgpu();
  const device = gpu.ctx.device;
  console.log(`adapter: ${gpu.description}`);
  const mi = Deno.args.indexOf("--mb");
  const sizes = (mi >= 0 ? Deno.args[mi + 1] : "268,1074").split(",").map(Number);
  const out: Record<string, unknown>[] = [];
  for (const mb of sizes) {
    const half = Math.floor((mb * 1e6) / 2 / 65536) * 65536;
    const mk = () =>
      device.createBuffer({ size: half, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const [k, v] = [mk(), mk()];
    // Non-zero contents (the loads must not be elided; values do not matter otherwise).
    const fill = new Uint32Array(1 << 20).map((_, i) => (i * 2654435761) >>> 0);
    for (const b of [k, v]) {
      for (let off = 0; off < half; off += fill.byteLength) {
        device.queue.writeBuffer(b, off, fill, 0, Math.min(fill.length, (half - off) / 4));
      }
    }
    const sums = device.createBuffer({ size: 4096 * T * 4, usage: GPUBufferUsage.STORAGE });
    const ceil = await measureCeiling(device, [{ buffer: k }, { buffer: v }]);
    const bytes = 2 * half;
    const cells = [
      `ceiling ${(ceil.gpuMs * 1e3).toFixed(1)} µs (${(ceil.gbs / 1e3).toFixed(2)} TB/s)`,
    ];
    out.push({ mb, variant: "ceiling", us: ceil.gpuMs * 1e3, tbs: ceil.gbs / 1e3 });
    // One workgroup a multiprocessor with 64 / 128 KB in flight, touches on / off, skew on /
    // off; then two a multiprocessor and many (S = 16 rows were measured too: see NOTES).
    const rows = [
      ...[8, 16].flatMap((U) => [0, 1].flatMap((P) => [0, 1].map((Z) => [128, U, 1, P, Z]))),
      [256, 8, 1, 0, 0],
      [256, 8, 1, 0, 1],
      [256, 8, 1, 1, 0],
      [1056, 4, 1, 0, 0],
    ];
    for (const [W, U, S, P, Z] of rows) {
      device.pushErrorScope("validation");
      const module = device.createShaderModule({ code: patternWgsl(U, S, P, Z === 1) });
      const pipe = device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      const err = await device.popErrorScope();
      if (err) throw new Error(`_pattern: W${W} U${U} S${S} P${P} Z${Z}: ${err.message}`);
      const bg = device.createBindGroup({
        layout: pipe.getBindGroupLayout(0),
        entries: [k, v, sums].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      const us = 1e3 * await timedByTimestamps(device, pipe, [bg], W, 3, 20);
      const tbs = bytes / us / 1e6;
      out.push({
        mb,
        variant: `W${W} U${U} S${S} P${P} Z${Z}`,
        us,
        tbs,
        frac: us ? ceil.gpuMs * 1e3 / us : 0,
      });
      cells.push(
        `W${W} U${U} S${S} P${P} Z${Z} ${us.toFixed(1)} (${
          (100 * ceil.gpuMs * 1e3 / us).toFixed(0)
        } %)`,
      );
    }
    console.log(`${mb} MB: ${cells.join(" | ")}`);
    for (const b of [k, v, sums]) b.destroy();
  }
  const ji = Deno.args.indexOf("--json");
  if (ji >= 0) await Deno.writeTextFile(Deno.args[ji + 1], JSON.stringify(out, null, 1));
}
