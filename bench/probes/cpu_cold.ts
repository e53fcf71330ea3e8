/**
 * Where lean's CPU call loses to ONNX Runtime native (issue #20 item 4): cold data or an idle
 * machine? One decode shape, each algorithm timed in blocks under five conditions — `warm`
 * (calls back to back), `flushed` (512 MiB written by this thread before each call, so K/V
 * come from DRAM), `idle` (200 ms asleep before each call, K/V left in the cache), `busy`
 * (200 ms of this thread spinning before each call: the process stays on a core, the other
 * threads idle as long) and `cold` (flushed, then idle: what `deno task bench --cpu`
 * measures). ORT's pool spins after a call, so blocks are 300 ms apart.
 *
 * Run: `deno run -A --lock=deno.lock bench/probes/cpu_cold.ts [B,Hq,Hkv,N] [reps=9]`
 *
 * @module
 */
import { closeAttentionWorkers, cpuAttentionParallel } from "../../backends/cpu/internal.ts";
import { decodeCase, ortCall } from "./_cpu_case.ts";

const [B, Hq, Hkv, N] = (Deno.args[0] ?? "1,32,8,16384").split(",").map(Number);
const reps = Number(Deno.args[1] ?? 9);
const { q, k, v, params, info } = decodeCase(B, Hq, Hkv, N);
const runs: Record<string, () => Promise<unknown>> = {
  lean: () => cpuAttentionParallel(info(q), info(k), info(v), params),
};
const ort = await ortCall(q, k, v);
if (typeof ort === "function") runs.ort = ort;
else console.log(`ORT not loaded: ${ort.absent}`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const junk = new Uint8Array(512 << 20);
const conditions: Record<string, () => Promise<void>> = {
  warm: () => Promise.resolve(),
  flushed: () => (junk.fill(1), Promise.resolve()),
  idle: () => sleep(200),
  busy: () => {
    const end = performance.now() + 200;
    while (performance.now() < end);
    return Promise.resolve();
  },
  cold: async () => {
    junk.fill(2);
    await sleep(200);
  },
};
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const bytes = 2 * k.size * 4;
console.log(`(${B},${Hq},${Hkv}) N=${N} float32, ${navigator.hardwareConcurrency} cores`);
for (const [cond, before] of Object.entries(conditions)) {
  const line: string[] = [];
  const ms: Record<string, number> = {};
  for (const [name, run] of Object.entries(runs)) {
    await sleep(300);
    const ts: number[] = [];
    for (let i = -2; i < reps; i++) {
      await before();
      const t0 = performance.now();
      await run();
      if (i >= 0) ts.push(performance.now() - t0);
    }
    ms[name] = med(ts);
    line.push(`${name} ${ms[name].toFixed(2)} ms (${(bytes / ms[name] / 1e6).toFixed(0)} GB/s)`);
  }
  const ratio = ms.ort ? ` | lean/ort ${(ms.lean / ms.ort).toFixed(2)}` : "";
  console.log(`${cond.padEnd(8)} ${line.join(" | ")}${ratio}`);
}
closeAttentionWorkers();
Deno.exit(0);
