/**
 * The import graph of the library's own files, for the layering test: every static import or
 * re-export and every dynamic `import("…")` with a literal specifier, resolved to a path
 * relative to the repository root. Comments are dropped first, so doc examples (which import
 * `mod.ts`) do not count.
 *
 * @module
 */

/** The library's layers, lowest first; each may import only its own layer or lower ones. */
export const LAYERS = ["tensor", "schedule", "backends", "ops", "attention", "top"] as const;

/** The top layer's files, in the repository root. */
const TOP_FILES = ["mod.ts", "defaults.ts", "display.ts"];

/** The layer of a repository path, or null for files outside the library. */
export function layerOf(path: string): number | null {
  if (TOP_FILES.includes(path)) return LAYERS.indexOf("top");
  const dir = path.split("/")[0];
  const i = LAYERS.indexOf(dir as typeof LAYERS[number]);
  return i >= 0 && dir !== "top" ? i : null;
}

/** Relative specifiers a source imports (comments removed). */
export function importsOf(source: string): string[] {
  const code = source
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^;"'`]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) {
    for (const m of code.matchAll(re)) found.push(m[1]);
  }
  return found;
}

/** Resolves a relative specifier of `from` (both relative to the root). */
export function resolve(from: string, spec: string): string | null {
  if (!spec.startsWith(".")) return null;
  const parts = from.split("/").slice(0, -1);
  for (const seg of spec.split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== ".") parts.push(seg);
  }
  return parts.join("/");
}

/** An edge of the graph that breaks the layering, or a cycle. */
export interface Violation {
  kind: "upward" | "cycle";
  detail: string;
}

/** Upward imports and cycles of a graph `file → imported files`. */
export function violations(graph: ReadonlyMap<string, readonly string[]>): Violation[] {
  const out: Violation[] = [];
  for (const [from, tos] of graph) {
    const lf = layerOf(from);
    for (const to of tos) {
      const lt = layerOf(to);
      if (lf !== null && lt !== null && lt > lf) {
        out.push({
          kind: "upward",
          detail: `${from} (${LAYERS[lf]}) imports ${to} (${LAYERS[lt]})`,
        });
      }
    }
  }
  // Cycles: iterative depth-first search, so a deep graph cannot overflow the stack.
  const state = new Map<string, 1 | 2>(); // 1 on the path, 2 done
  for (const start of graph.keys()) {
    if (state.has(start)) continue;
    const path: string[] = [];
    const stack: { node: string; next: number }[] = [{ node: start, next: 0 }];
    state.set(start, 1);
    path.push(start);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const tos = graph.get(top.node) ?? [];
      if (top.next < tos.length) {
        const to = tos[top.next++];
        if (!graph.has(to)) continue;
        const s = state.get(to);
        if (s === 1) {
          out.push({ kind: "cycle", detail: [...path.slice(path.indexOf(to)), to].join(" → ") });
        } else if (s === undefined) {
          state.set(to, 1);
          path.push(to);
          stack.push({ node: to, next: 0 });
        }
      } else {
        state.set(top.node, 2);
        path.pop();
        stack.pop();
      }
    }
  }
  return out;
}

/** The import graph of every .ts file of the library under `root`. */
export async function libraryGraph(root: URL): Promise<Map<string, string[]>> {
  const files: string[] = [...TOP_FILES];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(new URL(dir, root))) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".ts")) files.push(p);
    }
  };
  for (const layer of LAYERS) if (layer !== "top") await walk(layer);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const src = await Deno.readTextFile(new URL(f, root));
    graph.set(f, importsOf(src).map((s) => resolve(f, s)).filter((p): p is string => p !== null));
  }
  return graph;
}
