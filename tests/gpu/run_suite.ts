/**
 * The whole test suite on a GPU host, one `deno test` process a test file (plus one for the
 * doc tests), summed. On an NVIDIA H100 one process running every file ran out of WebGPU
 * adapters after ~35 files (`requestAdapter()` returned null; each file's module makes its own
 * adapter and devices, and destroying the devices when a file ends did not give them back):
 * a process a file does. Software adapters have no such limit; CI runs `deno task test`.
 *
 *   source .gpu/setup.sh && CI=true deno run -A tests/gpu/run_suite.ts [--filter WORD] [--shard I/N]
 *
 * `--shard I/N` (1 ≤ I ≤ N) runs every N-th group from the I-th (the doc tests are group 1): on an
 * H100 the whole suite takes more than one 10-minute device call (bench/NOTES.md, session 9).
 * Prints one line a file and, last, `tests: N passed, M failed`; exits 1 on any failure.
 *
 * @module
 */
const root = new URL("../../", import.meta.url);
const arg = (name: string) =>
  Deno.args.includes(name) ? Deno.args[Deno.args.indexOf(name) + 1] : undefined;
const filter = arg("--filter") ?? "";
const shardArg = arg("--shard") ?? "1/1";
const shard = /^(\d+)\/(\d+)$/.exec(shardArg);
const [si, sn] = shard ? [Number(shard[1]), Number(shard[2])] : [0, 0];
if (!(si >= 1 && si <= sn)) {
  console.error(`run_suite: --shard expects I/N with 1 ≤ I ≤ N, got ${shardArg}`);
  Deno.exit(2);
}
const files: string[] = [];
for await (const e of Deno.readDir(new URL("tests/", root))) {
  if (e.isFile && e.name.endsWith("_test.ts") && e.name.includes(filter)) {
    files.push(`tests/${e.name}`);
  }
}
files.sort();
const groups = [
  [
    "--doc",
    "mod.ts",
    "defaults.ts",
    "display.ts",
    "tensor/",
    "schedule/",
    "ops/",
    "attention/",
    "backends/",
  ],
  ...files.map((f) => [f]),
].filter((_, i) => i % sn === si - 1);
let passed = 0, failed = 0;
const bad: string[] = [];
for (const g of groups) {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "-A",
      "--lock=deno.lock",
      "--v8-flags=--expose-gc",
      ...g,
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const m = text.match(/(ok|FAILED) \| (\d+) passed(?: \([^)]*\))? \| (\d+) failed/);
  const p = m ? Number(m[2]) : 0, f = m ? Number(m[3]) : 1;
  passed += p;
  failed += f;
  const name = g.length > 1 ? "doc tests" : g[0];
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`${f > 0 || !m ? "FAILED" : "ok    "} ${name}: ${p} passed, ${f} failed (${s} s)`);
  if (f > 0 || !m || !out.success) {
    bad.push(name);
    const fails = text.split("\n").filter((l) => l.includes("=> ") || l.startsWith("error"));
    for (const l of fails.slice(0, 12)) console.log(`    ${l}`);
  }
}
if (bad.length) console.log(`failed files: ${bad.join(", ")}`);
console.log(`tests: ${passed} passed, ${failed} failed`);
Deno.exit(bad.length ? 1 : 0);
