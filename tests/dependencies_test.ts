/**
 * What a library user downloads is what the library uses: the module graphs of mod.ts and of
 * every example (what `deno task demo` runs) reach no npm package but ndarray (and its types),
 * as `deno info` reports them. Test- and benchmark-only packages (fast-check, onnxruntime-web)
 * are named in full where they are imported, in tests/ and bench/, so no import map pulls them
 * into a user's first run (README, "Install").
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";

const LIBRARY_PACKAGES = ["@types/ndarray@1.1.0", "ndarray@1.1.1"];

async function npmPackagesOf(entry: string): Promise<string[]> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: new URL("../", import.meta.url),
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (r.code !== 0) throw new Error(`deno info ${entry}: ${new TextDecoder().decode(r.stderr)}`);
  const info = JSON.parse(new TextDecoder().decode(r.stdout)) as {
    modules: { kind: string; npmPackage?: string }[];
  };
  // `npmPackages` lists the whole lockfile; the graph's own npm modules are what gets loaded.
  return [...new Set(info.modules.filter((m) => m.kind === "npm").map((m) => m.npmPackage!))]
    .sort();
}

const examples = [...Deno.readDirSync(new URL("../examples/", import.meta.url))]
  .filter((e) => e.isFile && e.name.endsWith(".ts"))
  .map((e) => `examples/${e.name}`)
  .sort();

for (const entry of ["mod.ts", ...examples]) {
  Deno.test(`${entry} loads no npm package but ndarray`, async () => {
    const packages = await npmPackagesOf(entry);
    if (entry === "mod.ts") assertEquals(packages, LIBRARY_PACKAGES);
    const extra = packages.filter((p) => !LIBRARY_PACKAGES.includes(p));
    assert(extra.length === 0, `${entry} loads ${extra.join(", ")}`);
  });
}
