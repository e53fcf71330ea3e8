/**
 * The library imported as a user outside this repository imports it: by `http://` URL, from a
 * folder with no deno.json (so no import map, no lockfile). A tiny file server serves this
 * checkout on 127.0.0.1 (an ephemeral port) for the length of the test; a script there
 * type-checks (`deno check`) and runs (`deno run`) lean against naive on the CPU and on WebGPU
 * (required under `CI=true`, as for the other GPU specs), and a CPU call on two threads, whose
 * Worker loads the library by URL as well.
 */
import { ok as assert } from "node:assert/strict";
import { fromFileUrl, serveCheckout } from "./_file_server.ts";

const SCRIPT = (base: string) => `
import * as la from "${base}/mod.ts";
import { poolTesting, workerScratchBytes } from "${base}/backends/cpu/_attention_worker.ts";
const backend = la.cpu();
const q = la.randn([2, 4, 1, 32], { seed: 1, backend });
const k = la.randn([2, 2, 200, 32], { seed: 2, backend });
const v = la.randn([2, 2, 200, 32], { seed: 3, backend });
const opts = { kvLens: [200, 77] };
const lean = await la.leanAttention(q, k, v, { ...opts, tileSize: 32, grid: 5 }).data();
const naive = await la.naiveAttention(q, k, v, opts).data();
// toNdarray loads the npm package ndarray: it must resolve without an import map too.
const nd = await la.toNdarray(la.tensor([[1, 2], [3, 4]], { backend }));
if (nd.get(1, 0) !== 3) throw new Error("ndarray view is wrong");
// Calls large enough for the CPU's Workers, which load the library by its URL too (through a
// data: module): the one-thread bits, and a Worker ran a job (it reports its scratch after one).
const kb = la.randn([1, 2, 32768, 32], { seed: 4, backend });
const qb = la.randn([1, 4, 1, 32], { seed: 5, backend });
la.setCpuThreads(1);
const one = await la.leanAttention(qb, kb, kb).data();
la.setCpuThreads(2);
let big = one, pooled = poolTesting.pooledCalls;
for (let i = 0; i < 100 && workerScratchBytes() === 0; i++) {
  big = await la.leanAttention(qb, kb, kb).data();
  if (!big.every((x, j) => Object.is(x, one[j]))) throw new Error("2 threads changed the bits");
  await new Promise((r) => setTimeout(r, 100));
}
pooled = poolTesting.pooledCalls - pooled;
const diff = lean.reduce((m, x, i) => Math.max(m, Math.abs(x - naive[i])), 0);
// WebGPU by URL too (its shaders are strings in the modules): lean there against the CPU's naive.
let gpu: number | string;
try {
  const g = await la.webgpu();
  const [qg, kg, vg] = await Promise.all([q, k, v].map((t) => t.to(g)));
  const leanGpu = await la.leanAttention(qg, kg, vg, opts).data();
  gpu = leanGpu.reduce((m, x, i) => Math.max(m, Math.abs(x - naive[i])), 0);
  g.destroy();
} catch (e) {
  gpu = String(e);
}
console.log(JSON.stringify({
  diff,
  finite: big.every(Number.isFinite),
  threads: la.cpuThreads(),
  pooled,
  workerScratch: workerScratchBytes(),
  gpu,
}));
`;

async function deno(args: string[], cwd: string): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

Deno.test("mod.ts imported by http:// URL from a folder without deno.json checks and runs", async () => {
  const root = fromFileUrl(new URL("../", import.meta.url));
  await using server = serveCheckout(root);
  const dir = await Deno.makeTempDir({ prefix: "leanattn-url-" });
  try {
    await Deno.writeTextFile(`${dir}/user.ts`, SCRIPT(server.base));
    const allowImport = `--allow-import=${server.host}`;
    const check = await deno(["check", "--all", "--no-config", allowImport, "user.ts"], dir);
    assert(check.code === 0, `deno check failed:\n${check.out}`);
    const run = await deno(["run", "--no-config", "-A", "user.ts"], dir);
    assert(run.code === 0, `deno run failed:\n${run.out}`);
    const lines = run.out.trim().split("\n");
    const r = JSON.parse(lines[lines.length - 1]);
    assert(Number.isFinite(r.diff) && r.diff < 1e-5, `max |lean - naive| = ${r.diff}\n${run.out}`);
    assert(r.finite, run.out);
    assert(r.threads.unavailable === null, `Workers unavailable: ${r.threads.unavailable}`);
    assert(r.pooled > 0, `no call went to the pool:\n${run.out}`);
    assert(r.workerScratch > 0, `no Worker reported a job:\n${run.out}`);
    if (typeof r.gpu === "number") {
      assert(r.gpu < 1e-5, `WebGPU lean - naive = ${r.gpu}\n${run.out}`);
    } else if (Deno.env.get("CI") === "true") {
      throw new Error(`CI=true but WebGPU by URL failed: ${r.gpu}`);
    } else {
      console.warn(`WebGPU by URL not checked: ${r.gpu}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
