/**
 * CPU attention ops on several threads (`setCpuThreads`, `backends/cpu/_attention_pooled.ts`):
 * every call gives the bits of one thread, for lean, flash-decoding and flash, ragged, causal,
 * float16, a variant and quantized K/V; the Workers get the job; a Worker's failure still
 * gives those bits, and one that dies loading its script stops the pool with the reason; bad
 * thread counts are named errors; and an idle pool does not keep the process alive. (Imported
 * by URL, the Workers load the library by URL too: url_import_test.ts.)
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as la from "../mod.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { poolTesting, workerScratchBytes } from "../backends/cpu/_attention_worker.ts";
import { POOLED_MIN_ELEMENTS } from "../backends/cpu/_attention_pooled.ts";

const SEED = Number(Deno.env.get("THREADS_SEED") ?? Date.now() % 100000);
console.log(`cpu_threads_test seed ${SEED} (replay: THREADS_SEED=${SEED})`);

interface Case {
  name: string;
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  dtype: "float32" | "float16";
  run: (q: la.Tensor, k: la.Tensor, v: la.Tensor) => la.Tensor;
  quant?: "int8";
}

const D = 128;
// Each case visits at least POOLED_MIN_ELEMENTS K/V elements (2²¹: 2 · 2 · 4096 · 128; the
// ragged one (8192 + 3001) · 2 · 128, the window's 6001 · 4 · 128; the causal prefill's 40 rows
// see ≥ 4057 keys of 4 heads; checked by counting the calls that went to the pool).
const GQA = { B: 2, Hq: 8, Hkv: 2, Sq: 1, dtype: "float32" } as const;
const CASES: Case[] = [
  {
    name: "lean GQA",
    ...GQA,
    N: 4096,
    run: la.leanAttention,
  },
  {
    name: "lean ragged, grid 7",
    ...GQA,
    N: 8192,
    run: (q, k, v) => la.leanAttention(q, k, v, { kvLens: [8192, 3001], grid: 7 }),
  },
  {
    name: "flash-decoding",
    ...GQA,
    N: 4096,
    dtype: "float16",
    run: (q, k, v) => la.flashAttention(q, k, v, { numSplits: 5 }),
  },
  {
    name: "flash causal prefill",
    B: 1,
    Hq: 4,
    Hkv: 4,
    Sq: 40,
    N: 4096,
    dtype: "float32",
    run: (q, k, v) => la.flashAttention(q, k, v, { causal: true }),
  },
  {
    name: "lean, sliding window and soft-cap",
    ...GQA,
    N: 8192,
    run: (q, k, v) => la.leanAttention(q, k, v, { window: { left: 6000 }, softcap: 30 }),
  },
  {
    name: "lean, int8 K/V",
    ...GQA,
    N: 4096,
    run: la.leanAttention,
    quant: "int8",
  },
];

/** out and lse of `c` on `threads` threads. */
async function outputs(c: Case, threads: number, seed: number) {
  const backend = la.cpu();
  const q = la.randn([c.B, c.Hq, c.Sq, D], { seed, dtype: c.dtype, backend });
  const k = la.randn([c.B, c.Hkv, c.N, D], { seed: seed + 1, dtype: c.dtype, backend });
  const v = la.randn([c.B, c.Hkv, c.N, D], { seed: seed + 2, dtype: c.dtype, backend });
  const was = la.setCpuThreads(threads);
  try {
    const kk = c.quant ? la.quantize(k, { dtype: c.quant }) : k;
    const vv = c.quant ? la.quantize(v, { dtype: c.quant }) : v;
    const run = c.run as (q: la.Tensor, k: unknown, v: unknown) => la.Tensor;
    const o = run(q, kk, vv);
    const lse = la.leanAttention(q, kk as la.Tensor, vv as la.Tensor, { returnLse: true }).lse;
    const r = { out: await o.data(), lse: await lse.data() };
    for (const t of [o, lse]) t.dispose();
    if (c.quant) {
      for (const x of [kk, vv] as la.QuantizedTensor[]) {
        [x.data, x.scale].forEach((t) => t.dispose());
      }
    }
    return r;
  } finally {
    la.setCpuThreads(was);
    for (const t of [q, k, v]) t.dispose();
  }
}

Deno.test({
  name: "cpu threads: every op gives the one-thread bits on 1, 2 and 3 threads",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    for (const [i, c] of CASES.entries()) {
      const seed = SEED + 10 * i;
      const one = await outputs(c, 1, seed);
      for (const threads of [2, 3]) {
        const before = poolTesting.pooledCalls;
        const many = await outputs(c, threads, seed);
        // the case's op and the lean lse call, both on the pool
        assert(poolTesting.pooledCalls === before + 2, `${c.name}: not on the pool`);
        const where = `${c.name}, ${threads} threads, seed ${seed}`;
        assertEquals(many.out, one.out, `${where}: out`);
        assertEquals(many.lse, one.lse, `${where}: lse`);
      }
    }
    // The Workers got jobs (each reports its scratch after one; given up to 10 s to report).
    for (let i = 0; i < 100 && workerScratchBytes() === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert(workerScratchBytes() > 0, "no Worker reported a job");
    assert(la.cpuThreads().unavailable === null, String(la.cpuThreads().unavailable));
  },
});

Deno.test({
  name:
    "cpu threads: a Worker's failure, before or after it claimed work, gives the one-thread bits",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const c = CASES[1];
    const one = await outputs(c, 1, SEED);
    for (const mode of [true, "claimed"] as const) {
      poolTesting.fail = mode;
      try {
        const many = await outputs(c, 3, SEED);
        assertEquals(many.out, one.out, `${mode}, seed ${SEED}: out`);
        assertEquals(many.lse, one.lse, `${mode}, seed ${SEED}: lse`);
      } finally {
        poolTesting.fail = null;
      }
    }
  },
});

Deno.test({
  name:
    "cpu threads: paged K/V (float32 and int8 caches over several page buffers), one thread's bits",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const backend = la.cpu();
    for (const dtype of ["float32", "int8"] as const) {
      const seed = SEED + (dtype === "int8" ? 7 : 3);
      const lens = [5000, 3500]; // 8500 keys · 2 heads · D ≥ 2²¹: the pool
      const cache = la.kvCache({
        batch: 2,
        kvHeads: 2,
        headDim: D,
        pageSize: 64,
        capacity: 12288,
        pagesPerBuffer: 40,
        dtype,
        backend,
      });
      const k = la.randn([2, 2, 5000, D], { seed, backend });
      const v = la.randn([2, 2, 5000, D], { seed: seed + 1, backend });
      const q = la.randn([2, 8, 1, D], { seed: seed + 2, backend });
      const was = la.setCpuThreads(1);
      try {
        cache.append(k, v, { lens });
        const runs = [];
        for (const threads of [1, 3]) {
          la.setCpuThreads(threads);
          const before = poolTesting.pooledCalls;
          const r = la.leanAttention(q, cache, { returnLse: true });
          runs.push({ out: await r.out.data(), lse: await r.lse.data() });
          r.out.dispose();
          r.lse.dispose();
          const pooled = poolTesting.pooledCalls - before;
          assert(pooled === (threads > 1 ? 1 : 0), `${dtype}: ${pooled} calls on the pool`);
        }
        assertEquals(runs[1].out, runs[0].out, `${dtype}, seed ${seed}: out`);
        assertEquals(runs[1].lse, runs[0].lse, `${dtype}, seed ${seed}: lse`);
      } finally {
        la.setCpuThreads(was);
        cache.dispose();
        for (const t of [q, k, v]) t.dispose();
      }
    }
  },
});

Deno.test("cpu threads: setCpuThreads takes 1 to 64 and returns the previous count", () => {
  const was = la.setCpuThreads(5);
  try {
    assert(la.cpuThreads().threads === 5);
    assert(la.setCpuThreads(64) === 5);
    for (const bad of [0, 65, 1.5, -1, NaN, Infinity, "2", undefined, null, 2n]) {
      let error: unknown = null;
      try {
        la.setCpuThreads(bad as number);
      } catch (e) {
        error = e;
      }
      assert(error instanceof ArgumentError, `${String(bad)}: ${error}`);
      assert(String(error).includes("from 1 to 64"), String(error));
      assert(la.cpuThreads().threads === 64, "a rejected count must not change the setting");
    }
  } finally {
    la.setCpuThreads(was);
  }
});

/** Runs `script` in a process of its own with `permissions`; its stdout's last line, parsed. */
async function subprocess(script: string, permissions: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "leanattn-threads-" });
  try {
    await Deno.writeTextFile(`${dir}/s.ts`, script);
    const cmd = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--no-prompt", ...permissions, `${dir}/s.ts`],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    const child = cmd.spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const r = await child.output();
    clearTimeout(timer);
    const out = new TextDecoder().decode(r.stdout).trim();
    const err = new TextDecoder().decode(r.stderr);
    assert(r.code === 0, `exit ${r.code} (a hang is killed after 60 s):\n${out}\n${err}`);
    return JSON.parse(out.split("\n").at(-1)!);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SCRIPT = `
import * as la from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
la.setCpuThreads(2);
const backend = la.cpu();
const q = la.randn([1, 8, 1, 128], { seed: 1, backend });
const k = la.randn([1, 2, 8192, 128], { seed: 2, backend });
const out = la.leanAttention(q, k, k);
const sum = (await out.data()).reduce((a, b) => a + b, 0);
const unavailable = la.cpuThreads().unavailable;
console.log(JSON.stringify({ finite: Number.isFinite(sum), unavailable }));
`;

Deno.test({
  name: "cpu threads: the process exits after a pooled op (idle Workers do not hold it)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    assert(2 * 8192 * 128 >= POOLED_MIN_ELEMENTS);
    const r = await subprocess(SCRIPT, ["-A"]);
    assert(r.finite && r.unavailable === null, JSON.stringify(r));
  },
});

const LOAD_FAILURE_SCRIPT = `
import * as la from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
import { poolTesting } from ${
  JSON.stringify(new URL("../backends/cpu/_attention_worker.ts", import.meta.url).href)
};
poolTesting.workerUrl = new URL("data:text/javascript," + encodeURIComponent("throw new Error('no load');"));
la.setCpuThreads(2);
const backend = la.cpu();
const q = la.randn([1, 8, 1, 128], { seed: 1, backend });
const k = la.randn([1, 2, 8192, 128], { seed: 2, backend });
la.setCpuThreads(1);
const one = await la.leanAttention(q, k, k).data();
la.setCpuThreads(2);
let same = true;
// The Worker's death reaches this thread as an event: give it up to 10 s between calls.
for (let i = 0; i < 100 && la.cpuThreads().unavailable === null; i++) {
  const two = await la.leanAttention(q, k, k).data();
  same &&= two.every((x, j) => Object.is(x, one[j]));
  await new Promise((r) => setTimeout(r, 100));
}
const pooled = poolTesting.pooledCalls;
const after = await la.leanAttention(q, k, k).data();
same &&= after.every((x, j) => Object.is(x, one[j]));
console.log(JSON.stringify({
  same,
  unavailable: la.cpuThreads().unavailable,
  posted: poolTesting.pooledCalls - pooled,
}));
`;

Deno.test({
  name: "cpu threads: a Worker that dies loading its script stops the pool, with the reason",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const r = await subprocess(LOAD_FAILURE_SCRIPT, ["-A"]);
    assert(r.same, `bits changed: ${JSON.stringify(r)}`);
    const why = String(r.unavailable);
    assert(why.includes("died while loading") && why.includes("no load"), JSON.stringify(r));
    assert(
      r.posted === 0,
      `a call posted to the pool after it was marked unavailable: ${r.posted}`,
    );
  },
});

const STALL_SCRIPT = `
import * as la from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
import { poolTesting, workerScratchBytes } from ${
  JSON.stringify(new URL("../backends/cpu/_attention_worker.ts", import.meta.url).href)
};
const backend = la.cpu();
const q = la.randn([1, 8, 1, 128], { seed: 11, backend });
const k = la.randn([1, 2, 16384, 128], { seed: 12, backend });
const v = la.randn([1, 2, 16384, 128], { seed: 13, backend });
la.setCpuThreads(1);
const one = await la.leanAttention(q, k, v).data();
const same = (x) => x.every((y, j) => Object.is(y, one[j]));
la.setCpuThreads(2);
let ok = same(await la.leanAttention(q, k, v).data()); // the Worker started and warm
poolTesting.fail = "hang";
poolTesting.stallMs = 300;
// A call whose Worker claims a schedule worker (the caller may claim all of a call first).
for (let i = 0; i < 50 && poolTesting.stalledCalls === 0; i++) {
  ok &&= same(await la.leanAttention(q, k, v).data());
  await new Promise((r) => setTimeout(r, 20));
}
poolTesting.fail = null;
const stalled = poolTesting.stalledCalls;
const afterStall = workerScratchBytes(); // 0: the pool was closed
// A fresh pool afterwards: its Worker reports a job.
for (let i = 0; i < 100 && workerScratchBytes() === 0; i++) {
  ok &&= same(await la.leanAttention(q, k, v).data());
  await new Promise((r) => setTimeout(r, 100));
}
console.log(JSON.stringify({
  ok,
  stalled,
  afterStall,
  fresh: workerScratchBytes() > 0,
  unavailable: la.cpuThreads().unavailable,
}));
`;

Deno.test({
  name: "cpu threads: a Worker stuck mid-run is given up on (one thread's bits, then a new pool)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // In a process of its own: it must also exit with the stuck Worker terminated.
    const r = await subprocess(STALL_SCRIPT, ["-A"]);
    assert(r.ok, `bits changed: ${JSON.stringify(r)}`);
    assert(r.stalled >= 1, `no call gave up on the stuck Worker: ${JSON.stringify(r)}`);
    assert(r.afterStall === 0, `the pool was not closed: ${JSON.stringify(r)}`);
    assert(r.fresh && r.unavailable === null, `no working pool afterwards: ${JSON.stringify(r)}`);
  },
});
