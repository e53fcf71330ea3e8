/**
 * The library imported as a user outside this repository imports it: by `http://` URL, from a
 * folder with no deno.json (so no import map, no lockfile). A tiny file server serves this
 * checkout on 127.0.0.1 (an ephemeral port) for the length of the test; a script there
 * type-checks (`deno check`) and runs (`deno run`) lean against naive on the CPU.
 */
import { ok as assert } from "node:assert/strict";
import { fromFileUrl, serveCheckout } from "./_file_server.ts";

const SCRIPT = (base: string) => `
import * as la from "${base}/mod.ts";
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
// A call large enough for the CPU's Workers: imported by URL it runs in this thread, and
// says why (node:worker_threads takes file: URLs only).
la.setCpuThreads(2);
const kb = la.randn([1, 2, 32768, 32], { seed: 4, backend });
const qb = la.randn([1, 4, 1, 32], { seed: 5, backend });
const big = await la.leanAttention(qb, kb, kb).data();
const diff = lean.reduce((m, x, i) => Math.max(m, Math.abs(x - naive[i])), 0);
console.log(JSON.stringify({ diff, finite: big.every(Number.isFinite), threads: la.cpuThreads() }));
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
    const why = String(r.threads.unavailable);
    assert(why.includes("imported from http: URL") && why.includes("file: URL"), run.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
