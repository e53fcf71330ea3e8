/**
 * Sizes past what a backend can hold, and a device destroyed under a pending read, end in the
 * library's errors, never a raw RangeError / OperationError (#19 item 8): creation over
 * {@link MAX_ELEMENTS} elements, a broadcast whose result would be over it (the CPU used to
 * throw `RangeError: Array buffer allocation failed`), and `readTimings()` pending across
 * `destroy()` (a {@link DeviceLostError}). Each refusal happens before anything is allocated:
 * `memory()` is unchanged.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { full, randn, zeros } from "../tensor/creation.ts";
import { add, mul } from "../ops/binary.ts";
import { matmul } from "../ops/matmul.ts";
import { ArgumentError, DeviceLostError, LimitError } from "../tensor/errors.ts";
import { MAX_ELEMENTS } from "../tensor/shape.ts";
import { exp } from "../ops/unary.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

describeBackends("sizes over MAX_ELEMENTS are LimitErrors before allocating", (backend) => {
  const before = backend.memory();
  expectError(LimitError, () => zeros([2 ** 40], { backend }), ["zeros", "2^31"], "zeros 2^40");
  expectError(
    LimitError,
    () => randn([2 ** 35], { backend, seed: 1 }),
    ["randn", "34359738368"],
    "randn 2^35",
  );
  expectError(LimitError, () => full([2 ** 20, 2 ** 12], 1, { backend }), ["full"], "full 2^32");
  const a = zeros([2 ** 17, 1], { backend });
  const b = zeros([2 ** 17], { backend });
  const c = zeros([2 ** 16, 1, 1], { backend });
  const d = zeros([2 ** 16, 2], { backend });
  const e = zeros([2 ** 16, 1, 1, 1], { backend });
  const f = zeros([2 ** 16, 1, 1], { backend });
  const mid = backend.memory();
  expectError(LimitError, () => add(a, b), ["add", "17179869184"], "add to 2^34");
  expectError(LimitError, () => mul(c, d), ["mul", "8589934592"], "mul to 2^33");
  expectError(LimitError, () => matmul(e, f), ["matmul"], "matmul batch 2^32");
  expectError(LimitError, () => a.reshape([2 ** 40]), ["reshape"], "reshape");
  // Found by garbage_test (seed 1247884453): a BigInt size reached the size arithmetic.
  expectError(
    ArgumentError,
    () => a.reshape([-1, 10n] as unknown as number[]),
    ["reshape", "bigint"],
    "reshape with a BigInt size",
  );
  // The refusals allocated nothing.
  assertEquals(backend.memory(), mid);
  for (const t of [a, b, c, d, e, f]) t.dispose();
  assertEquals(backend.memory().liveBytes, before.liveBytes);
  // The largest accepted size is MAX_ELEMENTS itself (allocation is the backend's concern).
  assertEquals(MAX_ELEMENTS, 2 ** 31);
});

Deno.test({
  name: "webgpu: readTimings pending across destroy() is a DeviceLostError",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    let gpu;
    try {
      const { webgpu } = await import("../backends/webgpu/webgpu_backend.ts");
      gpu = await webgpu();
    } catch (e) {
      if (Deno.env.get("CI") === "true") throw e;
      console.warn(`  (no webgpu backend: skipped: ${e})`);
      return;
    }
    if (!gpu.features.timestamps) {
      console.warn("  (no timestamp-query: skipped)");
      gpu.destroy();
      return;
    }
    gpu.setProfiling(true);
    const x = randn([1024], { backend: gpu, seed: 1 });
    exp(x);
    const pending = gpu.readTimings();
    gpu.destroy();
    let got: unknown = null;
    try {
      await pending;
    } catch (e) {
      got = e;
    }
    assertEquals(got instanceof DeviceLostError, true, `got ${got}`);
  },
});
