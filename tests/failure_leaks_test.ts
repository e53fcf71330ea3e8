/**
 * A failed WebGPU call frees everything it allocated (#19 item 4): an attention call whose
 * dispatch fails (a device limit met after planning, injected here through the context the
 * backend runs on) leaves `memory()` as it found it, call after call; a two-state
 * `mergeAttentionStates` never needs the many-state accumulator (so it runs where that
 * accumulator would exceed the binding limit), and a many-state merge that does need it is
 * refused with a {@link LimitError} naming `mergeAttentionStates`, before allocating.
 *
 * The limits are shrunk on a view of the real context (a device cannot be created with limits
 * below WebGPU's defaults), so the cases stay small. WebGPU only: the CPU backend has no
 * binding limits (its own failure paths: tests/cpu_scratch_test.ts, tests/garbage_test.ts).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import type { GpuContext } from "../backends/webgpu/context.ts";
import { webgpuMergeStates } from "../backends/webgpu/attention/merge_states.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { tensor } from "../tensor/creation.ts";
import { LimitError } from "../tensor/errors.ts";
import { normals } from "../tensor/random.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Tensor as TensorClass } from "../tensor/tensor.ts";
import { maxAbsDiff } from "../testing/reference.ts";
import { backends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function gpu(): Promise<WebGpuBackend | null> {
  const b = (await backends()).find((x) => x.name === "webgpu");
  if (!b) console.warn("  (no webgpu backend: skipped)");
  return (b ?? null) as WebGpuBackend | null;
}

/** `ctx` with some limits replaced and, if `failDispatch`, every dispatch refused. */
function view(
  ctx: GpuContext,
  limits: Record<string, number>,
  failDispatch = false,
): GpuContext {
  const lim = new Proxy(ctx.limits, {
    get: (t, k) => (typeof k === "string" && k in limits ? limits[k] : Reflect.get(t, k)),
  });
  return new Proxy(ctx, {
    get(t, k) {
      if (k === "limits") return lim;
      if (k === "dispatch" && failDispatch) {
        return () => {
          throw new LimitError("injected: the dispatch exceeds a device limit");
        };
      }
      const v = Reflect.get(t, k);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

const live = (b: WebGpuBackend) => {
  const m = b.memory();
  return { liveBytes: m.liveBytes, liveCount: m.liveCount };
};

Deno.test("webgpu attention: five failing calls leak nothing", opts, async () => {
  const b = await gpu();
  if (!b) return;
  const shape = [1, 4, 3, 16];
  const t = (seed: number) =>
    tensor(normals(shape.reduce((a, c) => a * c, 1), seed), { shape, backend: b });
  const [q, k, v] = [t(1), t(2), t(3)];
  await b.read(q.id, "float32", 1); // settle the uploads
  const before = live(b);
  const real = b.ctx;
  const mutable = b as unknown as { ctx: GpuContext };
  mutable.ctx = view(real, {}, true);
  try {
    for (let i = 0; i < 5; i++) {
      expectError(LimitError, () => flashAttention(q, k, v), ["injected"], "flash");
      expectError(LimitError, () => leanAttention(q, k, v, { grid: 3 }), ["injected"], "lean");
      expectError(
        LimitError,
        () => flashAttention(q, k, v, { numSplits: 2 }),
        ["injected"],
        "split",
      );
    }
  } finally {
    mutable.ctx = real;
  }
  assertEquals(live(b), before);
  // The backend still works after the failures.
  const out = flashAttention(q, k, v);
  assert((await out.data()).every(Number.isFinite));
  for (const x of [q, k, v, out]) x.dispose();
});

/** Two states of `rows` rows, D = 1, and what merging them gives (float64 on the host). */
function states(b: WebGpuBackend, rows: number, n: number) {
  const list: { out: Tensor; lse: Tensor }[] = [];
  const host: { o: Float32Array; l: Float32Array }[] = [];
  for (let s = 0; s < n; s++) {
    const o = normals(rows, 10 + s);
    const l = normals(rows, 20 + s);
    host.push({ o, l });
    list.push({
      out: tensor(o, { shape: [rows, 1], backend: b }),
      lse: tensor(l, { shape: [rows], backend: b }),
    });
  }
  const want = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const m = Math.max(...host.map((h) => h.l[r]));
    let sum = 0, acc = 0;
    for (const h of host) {
      const w = Math.exp(h.l[r] - m);
      sum += w;
      acc += w * h.o[r];
    }
    want[r] = acc / sum;
  }
  return { list, want };
}

Deno.test("webgpu merge: a two-state merge needs no accumulator", opts, async () => {
  const b = await gpu();
  if (!b) return;
  // The accumulator would take rows · (D + 2) · 4 = 7200 bytes, over the 4096 allowed; each
  // state (2400 bytes) and the result fit.
  const ctx = view(b.ctx, { maxStorageBufferBindingSize: 4096 });
  const rows = 600;
  const { list, want } = states(b, rows, 2);
  const before = live(b);
  const info = (x: Tensor) => ({ id: x.id, shape: x.shape, dtype: x.dtype });
  const r = webgpuMergeStates(ctx, list.map((s) => info(s.out)), list.map((s) => info(s.lse)));
  const got = await b.read(r.out, "float32", rows);
  assert(maxAbsDiff(got, want) < 1e-5, `merged output off by ${maxAbsDiff(got, want)}`);
  b.release(r.out);
  b.release(r.lse);
  assertEquals(live(b), before);
  for (const s of list) (s.out.dispose(), s.lse.dispose());
});

Deno.test(
  "webgpu merge: a refused many-state merge names the op and leaks nothing",
  opts,
  async () => {
    const b = await gpu();
    if (!b) return;
    // 6 storage buffers a stage: 3 states take two dispatches and an accumulator between them.
    const ctx = view(b.ctx, {
      maxStorageBufferBindingSize: 4096,
      maxStorageBuffersPerShaderStage: 6,
    });
    const start = live(b);
    const { list } = states(b, 600, 3);
    const before = live(b);
    const info = (x: Tensor) => ({ id: x.id, shape: x.shape, dtype: x.dtype });
    for (let i = 0; i < 5; i++) {
      expectError(
        LimitError,
        () => webgpuMergeStates(ctx, list.map((s) => info(s.out)), list.map((s) => info(s.lse))),
        ["mergeAttentionStates: the accumulator of a 3-state merge"],
        "3-state merge",
      );
    }
    assertEquals(live(b), before);
    // Through the public op on the real device, the same merge works.
    const m = mergeAttentionStates(list);
    assert(m.out instanceof TensorClass);
    m.out.dispose();
    m.lse.dispose();
    for (const s of list) (s.out.dispose(), s.lse.dispose());
    assertEquals(live(b), start);
  },
);
