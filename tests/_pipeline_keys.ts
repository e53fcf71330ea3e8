/**
 * A GPU context that records the pipeline key of every kernel it is asked for (which kernel,
 * which features), for tests that check what a call ran.
 */
import type { GpuContext } from "../backends/webgpu/context.ts";

/** `ctx` with `pipeline` calls recorded in `keys` (in call order; clear it between calls). */
export function recordPipelines(base: GpuContext): { ctx: GpuContext; keys: string[] } {
  const keys: string[] = [];
  const ctx = new Proxy(base, {
    get(t, p) {
      const f = Reflect.get(t, p, t);
      if (p === "pipeline") {
        return (key: string, wgsl: () => string, entry?: string) => {
          keys.push(key);
          return t.pipeline(key, wgsl, entry);
        };
      }
      return typeof f === "function" ? f.bind(t) : f;
    },
  }) as GpuContext;
  return { ctx, keys };
}
