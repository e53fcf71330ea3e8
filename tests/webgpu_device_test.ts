/**
 * What is specific to a WebGPU device: limits (LimitError naming the limit), error scopes
 * (validation errors thrown as library errors, never uncaptured), device loss (DeviceLostError
 * from every entry point; other devices unaffected), a missing adapter, and the parallelism
 * table of known GPUs.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects, throws } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { parallelismOf, webgpu } from "../backends/webgpu/webgpu_backend.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { naiveAttention } from "../attention/naive.ts";
import { exp, neg } from "../ops/unary.ts";
import { where } from "../ops/where.ts";
import { randn, tensor } from "../tensor/creation.ts";
import { DeviceLostError, LeanattnError, LimitError } from "../tensor/errors.ts";
import { referenceAttention } from "../testing/reference.ts";
import { compareIeee } from "./regress/cases.ts";
import { ownWebgpu, webgpuBackend } from "./_backends.ts";
import { expectError } from "./_assert.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "limits: oversize allocations and bindings throw LimitError naming the limit",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const b = await ownWebgpu({ defaultLimits: true });
    try {
      const maxBuf = b.limits.maxBufferSize;
      const maxBind = b.limits.maxStorageBufferBindingSize;
      throws(
        () => b.ctx.alloc(maxBuf / 4 + 1, "float32"),
        (e) => e instanceof LimitError && /maxBufferSize/.test(e.message),
      );
      throws(() => b.ctx.scratch(maxBuf + 16), LimitError);
      if (maxBind + 16 <= maxBuf) {
        // Fits a buffer but not a binding: the kernel refuses instead of reading garbage.
        const id = b.ctx.alloc(maxBind / 4 + 4, "float32");
        throws(
          () => b.unary("neg", { id, shape: [maxBind / 4 + 4], dtype: "float32" }),
          (e) => e instanceof LimitError && /maxStorageBufferBindingSize/.test(e.message),
        );
        b.release(id);
      }
      // The backend still works afterwards.
      const t = tensor([1, 2, 3], { backend: b });
      assertEquals(await neg(t).data(), Float32Array.of(-1, -2, -3));
    } finally {
      b.destroy();
    }
    await rejects(
      webgpu({ requiredLimits: { maxBufferSize: Number.MAX_SAFE_INTEGER } }),
      (e) => e instanceof LimitError && /maxBufferSize/.test((e as Error).message),
    );
  },
});

Deno.test({
  name:
    "error scopes: failing pipelines and invalid dispatches surface once as a LeanattnError, never uncaptured",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const b = await ownWebgpu();
    let uncaptured = 0;
    b.device.addEventListener("uncapturederror", () => uncaptured++);
    try {
      const bad = b.ctx.pipeline("broken", () => "@compute @workgroup_size(1) fn main( {");
      const t = tensor([1, 2], { backend: b });
      await rejects(t.data(), (e) => e instanceof LeanattnError && /broken/.test(String(e)));
      // Once known, using the bad pipeline fails at once with the same error.
      throws(
        () => b.ctx.dispatch(bad, [], [1]),
        (e) => e instanceof LeanattnError && /broken/.test(String(e)),
      );
      // A validation error inside a dispatch (binding count mismatch) is captured too.
      const ok = b.ctx.pipeline(
        "ok",
        () =>
          "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n" +
          "@compute @workgroup_size(1) fn main() { y[0] = 1.0; }",
      );
      b.ctx.dispatch(ok, [], [1], "missing-binding");
      await rejects(
        t.data(),
        (e) => e instanceof LeanattnError && /missing-binding/.test(String(e)),
      );
      // And the backend recovers.
      assertEquals(await t.data(), Float32Array.of(1, 2));
      // An invalid bind group: offset 4 breaks minStorageBufferOffsetAlignment (256).
      const copy = b.ctx.pipeline(
        "limits-test-copy",
        () =>
          `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
           @compute @workgroup_size(1) fn main() { a[0] = 1.0; }`,
      );
      const buf = b.ctx.scratch(1024);
      b.ctx.dispatch(copy, [{ buffer: buf, offset: 4, size: 16 }], [1], "misaligned");
      await rejects(t.data(), (e) => e instanceof LeanattnError && /misaligned/.test(String(e)));
      assert(Math.abs((await exp(t).data())[0] - Math.E) < 1e-5, "the error is thrown once");
      assertEquals(uncaptured, 0, "nothing reached the uncaptured-error handler");
    } finally {
      b.destroy();
    }
  },
});

Deno.test({
  name:
    "device loss: ops, creation, attention, merge, reads and copies throw DeviceLostError; other and new devices work",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const doomed = await ownWebgpu();
    const survivor = await ownWebgpu(); // another device: must not notice
    const make = (b: Backend, seed: number) => ({
      q: randn([1, 2, 1, 8], { seed, backend: b }),
      k: randn([1, 1, 20, 8], { seed: seed + 1, backend: b }),
      v: randn([1, 1, 20, 8], { seed: seed + 2, backend: b }),
    });
    const x = make(doomed, 1);
    const t = tensor([1, 2, 3], { backend: doomed });
    const r = exp(t); // in flight
    const pending = flashAttention(x.q, x.k, x.v, { returnLse: true }); // in flight
    doomed.destroy();
    assert(doomed.lost);
    const lostOps: [string, () => unknown][] = [
      ["naive", () => naiveAttention(x.q, x.k, x.v)],
      ["flash", () => flashAttention(x.q, x.k, x.v)],
      ["flash-decoding", () => flashAttention(x.q, x.k, x.v, { numSplits: 2 })],
      ["lean", () => leanAttention(x.q, x.k, x.v, { grid: 3 })],
      ["merge", () => mergeAttentionStates([pending])],
      ["where", () => where(x.k, x.k, 0)],
      ["neg", () => neg(t)],
      ["randn", () => randn([2], { seed: 1, backend: doomed })],
      ["tensor", () => tensor([1], { backend: doomed })],
    ];
    for (const [name, f] of lostOps) expectError(DeviceLostError, f, ["device"], name);
    for (const y of [x.q, pending.out, pending.lse, r]) {
      await rejects(y.data(), DeviceLostError, `read of ${y}`);
      await rejects(y.to(cpu()), DeviceLostError, `copy of ${y}`);
    }
    for (const y of [x.q, x.k, x.v, pending.out, pending.lse, t, r]) y.dispose(); // harmless
    doomed.destroy(); // idempotent

    // The other device, and a fresh one, still compute attention correctly.
    for (const b of [survivor, await ownWebgpu()]) {
      const y = make(b, 5);
      const got = await leanAttention(y.q, y.k, y.v, { grid: 3, tileSize: 4 }).data();
      const ref = referenceAttention({
        q: await y.q.data(),
        k: await y.k.data(),
        v: await y.v.data(),
        B: 1,
        Hq: 2,
        Hkv: 1,
        Sq: 1,
        N: 20,
        D: 8,
      });
      assert(compareIeee(got, ref.out, 1e-5) === null, "attention after a device loss");
      b.destroy();
    }
  },
});

Deno.test({
  name: "a device lost outside the backend makes later ops throw DeviceLostError",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const b = await ownWebgpu();
    const t = tensor([1, 2, 3], { backend: b });
    b.device.destroy();
    await b.device.lost;
    await new Promise((r) => setTimeout(r, 0));
    assert(b.lost);
    throws(() => exp(t), DeviceLostError);
    await rejects(t.data(), DeviceLostError);
  },
});

Deno.test({
  name: "no adapter: BackendUnavailableError says why and how to get one",
  ...opts,
  fn: async () => {
    const url = new URL("../backends/webgpu/webgpu_backend.ts", import.meta.url).href;
    const code = `const { webgpu } = await import(${JSON.stringify(url)});
      try { await webgpu(); console.log("created"); }
      catch (e) { console.log(e.name + ": " + e.message); }`;
    const { stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-check", code],
      // An unknown backend name makes requestAdapter() return null.
      env: { DENO_WEBGPU_BACKEND: "no-such-backend", RUST_BACKTRACE: "0", NO_COLOR: "1" },
      stderr: "null",
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert(/^BackendUnavailableError: /.test(out), out);
    assert(/requestAdapter\(\) returned null/.test(out), out);
    assert(/no-such-backend/.test(out) && /mesa-vulkan-drivers/.test(out), out);
  },
});

Deno.test("parallelism: multiprocessors of known GPUs, 8 for software adapters, else 32", () => {
  const cases: [string, number, boolean][] = [
    ["NVIDIA H100 80GB HBM3", 132, true],
    ["NVIDIA H100 PCIe", 114, true],
    ["NVIDIA H200", 132, true],
    ["NVIDIA A100-SXM4-80GB", 108, true],
    ["NVIDIA L4", 58, true],
    ["NVIDIA L40S", 32, false],
    ["NVIDIA GeForce RTX 4090", 128, true],
    ["llvmpipe (LLVM 15.0.6, 256 bits)", 8, false],
    ["Apple M3", 32, false],
  ];
  for (const [name, parallelism, known] of cases) {
    assertEquals(parallelismOf(name), { parallelism, known }, name);
  }
});
