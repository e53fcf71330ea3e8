/**
 * Where a CPU attention call's time goes (issue #20 item 4): for one decode shape, times
 * interleaved in one process on the same inputs — the Web Worker call
 * (`cpuAttentionParallel`), the same schedule in this thread (`cpuAttention`), and ONNX
 * Runtime native when it loads (`ort`: its pool on all cores; `ort1`: one thread) — and prints
 * the schedule's size (workers, segments, cuts).
 *
 * Run: `deno run -A --lock=deno.lock bench/probes/cpu_parts.ts [B,Hq,Hkv,N] [reps=9]
 * [runs=workers,inThread,ort] [threads] [grid] [tileSize]` (an empty argument keeps the
 * default). ORT's pool spins after a call, so with ORT in the set each call waits 100 ms first.
 * `workersSab` and `inThreadSab` run the same calls on copies of K and V in plain
 * SharedArrayBuffers instead of shared WebAssembly memory (`setWasmBacking`: the tiles are then
 * copied with `TypedArray.prototype.set`, not `memory.copy`). `workersRanges` splits the
 * schedule's workers over the threads in fixed ranges instead of claiming them from a counter.
 *
 * @module
 */
import { closeAttentionWorkers, cpuAttentionParallel } from "../../backends/cpu/internal.ts";
import { cpuAttention } from "../../backends/cpu/attention.ts";
import { setWasmBacking } from "../../backends/cpu/_storage.ts";
import { tensor } from "../../tensor/creation.ts";
import { decodeCase, ortCall } from "./_cpu_case.ts";

const [B, Hq, Hkv, N] = (Deno.args[0] ?? "1,32,8,16384").split(",").map(Number);
const reps = Number(Deno.args[1] ?? 9);
const only = (Deno.args[2] ?? "workers,inThread,ort").split(",");
const threads = Deno.args[3] ? Number(Deno.args[3]) : undefined;
const grid = Deno.args[4] ? Number(Deno.args[4]) : undefined;
const tileSize = Deno.args[5] ? Number(Deno.args[5]) : undefined;
const { backend: be, q, k, v, schedule, params, info } = decodeCase(B, Hq, Hkv, N, {
  ...grid && { grid },
  ...tileSize && { tileSize },
});
setWasmBacking(false);
const kSab = tensor(await k.data(), { shape: k.shape, backend: be });
const vSab = tensor(await v.data(), { shape: v.shape, backend: be });
setWasmBacking(true);
const segs = schedule.workers.reduce((a, w) => a + w.length, 0);
console.log(
  `(${B},${Hq},${Hkv}) N=${N}: ${schedule.workers.length} workers, ${segs} segments, ` +
    `${schedule.cuts.length} cuts, ${schedule.numPartials} partials, tile ${schedule.plan.tileSize}`,
);
const runs: Record<string, () => Promise<unknown>> = {
  workers: () => cpuAttentionParallel(info(q), info(k), info(v), params, { threads }),
  inThread: () => Promise.resolve(cpuAttention(info(q), info(k), info(v), params)),
  workersSab: () => cpuAttentionParallel(info(q), info(kSab), info(vSab), params, { threads }),
  workersRanges: () =>
    cpuAttentionParallel(info(q), info(k), info(v), params, { threads, split: "ranges" }),
  inThreadSab: () => Promise.resolve(cpuAttention(info(q), info(kSab), info(vSab), params)),
};
if (only.includes("ort")) {
  const ort = await ortCall(q, k, v);
  if (typeof ort === "function") runs.ort = ort;
}
// ORT on one thread of its pool: against `inThread`, the per-thread kernels alone.
if (only.includes("ort1")) {
  const ort = await ortCall(q, k, v, 1);
  if (typeof ort === "function") runs.ort1 = ort;
}
for (const name of Object.keys(runs)) if (!only.includes(name)) delete runs[name];
const times: Record<string, number[]> = {};
for (let i = -2; i < reps; i++) {
  for (const [name, run] of Object.entries(runs)) {
    // ORT's pool spins for a while after a run, on every core: let it stop before the next.
    if (runs.ort || runs.ort1) await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await run();
    if (i >= 0) (times[name] ??= []).push(performance.now() - t0);
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const bytes = 2 * k.size * 4;
for (const [name, ts] of Object.entries(times)) {
  const m = med(ts);
  console.log(
    `${name.padEnd(11)} median ${m.toFixed(2)} ms  min ${Math.min(...ts).toFixed(2)} ms  ${
      (bytes / m / 1e6).toFixed(1)
    } GB/s`,
  );
}
if (times.ort && times.workers) {
  console.log(`workers / ort = ${(med(times.workers) / med(times.ort)).toFixed(2)}`);
}
if (times.ort1 && times.inThread) {
  console.log(`inThread / ort1 = ${(med(times.inThread) / med(times.ort1)).toFixed(2)}`);
}
closeAttentionWorkers();
