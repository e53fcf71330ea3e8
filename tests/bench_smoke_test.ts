/**
 * `deno task bench --smoke` end to end on the CPU and (when an adapter exists) on WebGPU, the
 * split-K/V path included: JSON and SVG written, every algorithm checked and timed.
 */
import { type Results, validateResults } from "../bench/_results.ts";
import { assert, assertEquals, assertMatch, gpuOrSkip } from "./_bench.ts";

async function runBench(args: string[]): Promise<{ code: number; out: string; res: Results }> {
  const dir = await Deno.makeTempDir();
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/bench.ts", ...args, "--out", dir],
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(p.stdout) + new TextDecoder().decode(p.stderr);
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  const json = files.find((f) => f.endsWith(".json"));
  assert(json, `no JSON written (exit ${p.code}):\n${out}`);
  assert(files.includes(json.replace(/\.json$/, ".svg")), `no SVG beside ${json}`);
  const res = validateResults(JSON.parse(await Deno.readTextFile(`${dir}/${json}`)));
  await Deno.remove(dir, { recursive: true });
  return { code: p.code, out, res };
}

Deno.test({
  name: "bench --cpu --smoke: runs end to end, writes JSON + SVG, lean agrees with flash",
  sanitizeResources: false,
  fn: async () => {
    const { code, out, res } = await runBench(["--cpu", "--smoke"]);
    assertEquals(code, 0, out);
    assertEquals(res.backend, "cpu");
    assertEquals(res.rows.length, 2 * 2);
    for (const r of res.rows) {
      assert(r.error === undefined, `${r.algo}: ${r.error}`);
      assert(r.wallMs! > 0 && r.effGBs! > 0 && r.fracCeiling! > 0);
    }
    assert(res.rows.some((r) => r.kvLens !== undefined));
  },
});

Deno.test({
  name: "bench --smoke on WebGPU: every algorithm checked against flash and timed",
  sanitizeResources: false,
  fn: async () => {
    if (!(await gpuOrSkip())) return;
    const { code, out, res } = await runBench([
      "--smoke",
      "--algos",
      "lean,flash,flash-decoding,naive,ort-webgpu",
      "--no-peers",
    ]);
    assertEquals(code, 0, out);
    assertEquals(res.backend, "webgpu");
    assert(res.ceilingGBs > 0);
    assertEquals(res.rows.length, 2 * 4);
    for (const r of res.rows) {
      assert(
        r.error === undefined && r.skipped === undefined,
        `${r.algo}: ${r.error ?? r.skipped}`,
      );
      assert(r.gpuMs! > 0 && r.wallMs! > 0, `${r.algo} timed`);
      assert(r.refDiff! <= r.tol!, `${r.algo} checked against float64`);
      assert(r.maxAbsDiff! <= r.tol!, `${r.algo} agrees with flash`);
      assert(r.fracCeiling! > 0 && r.ceilingGBs! > 0);
    }
    assertMatch(out, /\[\s*1\/2\]/);
  },
});

Deno.test({
  name: "bench --smoke on WebGPU: lean over a paged KV cache checked, timed, bytes it stores",
  sanitizeResources: false,
  fn: async () => {
    if (!(await gpuOrSkip())) return;
    // With 64 KiB parts the caches' pages span several page buffers, and contiguous K/V are
    // in parts (the paged rows are then checked against their own chunks).
    for (const extra of [[], ["--part-bytes", "65536"]]) {
      const { code, out, res } = await runBench([
        "--smoke",
        ...extra,
        "--algos",
        "lean,lean-paged16,lean-paged256",
        "--no-peers",
      ]);
      assertEquals(code, 0, out);
      assertEquals(res.rows.length, 2 * 3);
      for (const r of res.rows) {
        assert(r.error === undefined && r.skipped === undefined, `${r.algo}: ${r.error}`);
        assert(r.gpuMs! > 0 && r.refDiff! <= r.tol!, `${r.algo} timed and checked`);
        assert(r.storedBytes! > 0, `${r.algo} reports its bytes`);
        if (r.algo === "lean") continue;
        assertEquals(r.pageSize, r.algo === "lean-paged16" ? 16 : 256);
        if (extra.length === 0) assertMatch(r.note ?? "", /bit-identical to contiguous lean/);
      }
      // The ragged case (lengths 300 and 77, padded to 300): 16-token pages store less.
      const ragged = res.rows.filter((r) => r.kvLens);
      const bytes = (a: string) => ragged.find((r) => r.algo === a)!.storedBytes!;
      assert(bytes("lean-paged16") < bytes("lean"), `${bytes("lean-paged16")} < ${bytes("lean")}`);
    }
  },
});

Deno.test({
  name: "bench --smoke --part-bytes on WebGPU: split K/V run per part, checked and timed",
  sanitizeResources: false,
  fn: async () => {
    if (!(await gpuOrSkip())) return;
    // 64 KiB parts: the N=512 case's 128 KiB K/V in 2 parts, the ragged N=300 one in 3 parts
    // of 100 keys (not a multiple of the input block, so a misplaced part fails the check).
    const { code, out, res } = await runBench([
      "--smoke",
      "--part-bytes",
      "65536",
      "--algos",
      "lean,flash,flash-decoding,naive",
      "--no-peers",
    ]);
    assertEquals(code, 0, out);
    assertMatch(out, /\(K\/V in 2 parts\)/);
    assertMatch(out, /\(K\/V in 3 parts\)/);
    assertEquals(res.rows.length, 2 * 4);
    for (const r of res.rows) {
      assert(r.error === undefined, `${r.algo}: ${r.error}`);
      if (r.algo === "naive") {
        assertMatch(r.skipped ?? "", /one buffer.*stored across buffers/);
        continue;
      }
      assert(r.skipped === undefined, `${r.algo}: ${r.skipped}`);
      assert(r.gpuMs! > 0 && r.wallMs! > 0 && r.passes! > 1, `${r.algo} timed over its passes`);
      assert(r.refDiff! <= r.tol!, `${r.algo} checked against float64`);
      assert(r.maxAbsDiff! <= r.tol!, `${r.algo} agrees with flash`);
      assert(r.fracCeiling! > 0 && r.ceilingGBs! > 0);
      assertMatch(r.note ?? "", /stored in [23] buffers/);
    }
  },
});
