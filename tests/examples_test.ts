/**
 * The README's examples run: every script in examples/ with `deno run` on the CPU at small
 * sizes (each checks its own result and exits non-zero when wrong), and the code cells of
 * examples/notebook.ipynb joined into one script (a cell's last expression is only shown by
 * Jupyter; here it is evaluated and dropped).
 */
import { ok as assert } from "node:assert/strict";

const root = new URL("../", import.meta.url);

async function denoRun(args: string[], cwd: URL): Promise<string> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  assert(r.code === 0, `deno run ${args.join(" ")} failed (exit ${r.code}):\n${out}`);
  return out;
}

const RUNS: [string, string[]][] = [
  ["examples/chunked_kv_cache.ts", ["--n", "900", "--chunk", "250"]],
  ["examples/causal_prefill.ts", ["--sq", "20", "--n", "150"]],
  ["examples/decode_loop.ts", ["--layers", "2", "--prompt", "40", "--steps", "12", "--page", "8"]],
  ["examples/demo.ts", ["--cpu", "--n", "300", "--svg", "SVG"]],
  ["examples/schedule.ts", ["--out", "SVG"]],
  ["examples/variants.ts", ["--n", "700", "--window", "100"]],
];

for (const [script, args] of RUNS) {
  Deno.test(`${script} runs`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "leanattn-example-" });
    try {
      const out = await denoRun(
        [script, ...args.map((a) => a === "SVG" ? `${dir}/s.svg` : a)],
        root,
      );
      assert(out.trim().length > 0, "printed nothing");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("every example script is run by this test", () => {
  const listed = new Set(RUNS.map(([s]) => s));
  for (const e of Deno.readDirSync(new URL("examples/", root))) {
    // `_` modules are the scripts' shared helpers, not scripts.
    if (e.name.endsWith(".ts") && !e.name.startsWith("_")) {
      assert(listed.has(`examples/${e.name}`), `examples/${e.name}`);
    }
  }
});

Deno.test("examples/notebook.ipynb: its code cells run", async () => {
  const nb = JSON.parse(await Deno.readTextFile(new URL("examples/notebook.ipynb", root)));
  const cells = (nb.cells as { cell_type: string; source: string[] }[])
    .filter((c) => c.cell_type === "code")
    .map((c) => c.source.join(""));
  assert(cells.length >= 3);
  // A cell's last expression (what Jupyter shows) is a plain statement here.
  const script = cells.join("\n;\n");
  const dir = new URL("examples/", root);
  const file = new URL(`_notebook_${crypto.randomUUID()}.ts`, dir);
  await Deno.writeTextFile(file, `${script}\nconsole.log("notebook ok");\n`);
  try {
    const out = await denoRun([file.pathname], dir);
    assert(out.includes("notebook ok"), out);
  } finally {
    await Deno.remove(file);
  }
});
