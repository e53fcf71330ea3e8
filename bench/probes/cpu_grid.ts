/**
 * Does a finer lean grid balance the CPU threads' tail? Times `la.leanAttention` on the CPU
 * through the ops (the pool, `setCpuThreads`) for several `grid` values, interleaved, median
 * of the rounds. The default grid is twice the cores: with the claimed split a thread that
 * runs slower than the others (a busy core, a far memory channel) can hold the call for up to
 * one schedule worker's run, half a thread's share; 4–8 runs a thread would cut that tail at
 * the cost of more cut units to merge. The grid changes the bits (where units are cut), not
 * the thread count. bench/NOTES.md, session (29).
 *
 * Run: `deno run -A bench/probes/cpu_grid.ts [B,Hq,Hkv,N] [grids=2c,4c,8c] [rounds=9]
 * [threads=cores] [waitMs=0]` (`4c`: four times the cores).
 *
 * @module
 */
import * as la from "../../mod.ts";

const [B, Hq, Hkv, N] = (Deno.args[0] || "1,32,8,16384").split(",").map(Number);
const cores = navigator.hardwareConcurrency || 1;
const grids = (Deno.args[1] || "2c,4c,8c").split(",").map((g) =>
  g.endsWith("c") ? Number(g.slice(0, -1)) * cores : Number(g)
);
const rounds = Number(Deno.args[2] || 9);
const threads = Number(Deno.args[3] || cores);
const waitMs = Number(Deno.args[4] || 0);
const backend = la.cpu();
const q = la.randn([B, Hq, 1, 128], { seed: 1, backend });
const k = la.randn([B, Hkv, N, 128], { seed: 2, backend });
const v = la.randn([B, Hkv, N, 128], { seed: 3, backend });
la.setCpuThreads(Math.min(threads, 64));
const times = new Map<number, number[]>(grids.map((g) => [g, []]));
for (const g of grids) la.leanAttention(q, k, v, { grid: g }).dispose();
for (let r = 0; r < rounds; r++) {
  for (const g of grids) {
    if (waitMs) await new Promise((res) => setTimeout(res, waitMs));
    const t0 = performance.now();
    la.leanAttention(q, k, v, { grid: g }).dispose();
    times.get(g)!.push(performance.now() - t0);
  }
}
const median = (x: number[]) => [...x].sort((a, b) => a - b)[x.length >> 1];
console.log(
  `(${B},${Hq},${Hkv}) N=${N}, ${la.cpuThreads().threads} threads: ` +
    grids.map((g) => `grid ${g} ${median(times.get(g)!).toFixed(2)} ms`).join(", "),
);
