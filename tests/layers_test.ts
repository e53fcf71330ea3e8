/**
 * The library's layers import only downward (tensor → schedule → backends → ops → attention
 * → mod.ts/defaults.ts) and no file imports itself through a cycle. The checker is tested on
 * graphs that must fail, then run on the real tree.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { importsOf, libraryGraph, violations } from "../testing/import_graph.ts";

Deno.test("import checker: finds upward imports and cycles, ignores comments", () => {
  const src = `/** @example\n * import { x } from "../mod.ts";\n */\n` +
    `import type { A } from "./a.ts";\nexport { b } from "../b.ts";\n` +
    `// import { no } from "./no.ts";\nconst m = await import("./c.ts");\nimport "./d.ts";\n`;
  assertEquals(importsOf(src).sort(), ["../b.ts", "./a.ts", "./c.ts", "./d.ts"]);
  const bad = new Map([
    ["tensor/tensor.ts", ["backends/backend.ts"]],
    ["backends/backend.ts", ["schedule/x.ts"]],
    ["schedule/x.ts", ["schedule/y.ts"]],
    ["schedule/y.ts", ["schedule/x.ts"]],
  ]);
  const v = violations(bad);
  assertEquals(v.filter((x) => x.kind === "upward").length, 1);
  assert(v[0].detail.includes("tensor/tensor.ts (tensor) imports backends/backend.ts"));
  const cycles = v.filter((x) => x.kind === "cycle");
  assertEquals(cycles.length, 1);
  assert(cycles[0].detail.includes("schedule/x.ts → schedule/y.ts → schedule/x.ts"));
  assertEquals(violations(new Map([["ops/a.ts", ["tensor/t.ts"]], ["tensor/t.ts", []]])), []);
});

Deno.test("library layers: no upward import, no cycle", async () => {
  const graph = await libraryGraph(new URL("../", import.meta.url));
  assert(graph.size > 40, `found only ${graph.size} library files`);
  const v = violations(graph);
  assertEquals(v.map((x) => `${x.kind}: ${x.detail}`), []);
});
