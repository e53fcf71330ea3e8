/**
 * Bad input to the paged K/V API gets a named error saying what was expected and what was
 * given: `pagedKV` (shapes, dtypes, backends, block tables, lengths, a tensor stored in
 * parts), `kvCache` (sizes, quantized dtypes, a page over one binding), `append` (shapes,
 * dtypes, lens, out of capacity — the cache unchanged after a failed append), `free`/`fork`,
 * and attention over paged K/V (`kvLens` given, a fourth argument, q mismatches, disposed
 * sources). Nothing is left allocated.
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { tensor, zeros } from "../tensor/creation.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  LimitError,
  ShapeError,
} from "../tensor/errors.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { naiveAttention } from "../attention/naive.ts";
import { kvCache } from "../attention/kv_cache.ts";
import { pagedKV } from "../attention/paged_kv.ts";
import { describeBackends, ownWebgpu } from "./_backends.ts";
import { expectError, twinOf } from "./_assert.ts";
import { sameBits } from "./_paged_api.ts";

// deno-lint-ignore no-explicit-any
const anyOf = (x: unknown): any => x;

describeBackends("pagedKV: bad pages, block tables and lengths are named errors", (backend) => {
  const before = backend.memory();
  const k = zeros([4, 2, 3, 8], { backend });
  const v = zeros([4, 2, 3, 8], { backend });
  const ok = { kPages: k, vPages: v, blockTable: [[0, 1], [3]], kvLens: [5, 2] };
  const bad = (cls: Parameters<typeof expectError>[0], o: object, m: string[], what: string) =>
    expectError(cls, () => pagedKV(anyOf({ ...ok, ...o })), m, what);
  const made: { dispose(): void }[] = [];
  const tmp = (shape: number[]) => {
    const t = zeros(shape, { backend });
    made.push(t);
    return t;
  };
  try {
    pagedKV(ok).dispose(); // the good call works
    bad(ArgumentError, { kvLen: [5, 2] }, ["kvLen", "kvLens"], "misspelt option");
    bad(ArgumentError, { blockTable: undefined }, ["blockTable is required"], "missing table");
    bad(ShapeError, { kPages: tmp([4, 2, 3]) }, ["[P, Hkv, pageSize, D]"], "rank");
    bad(
      ShapeError,
      { vPages: tmp([4, 1, 3, 8]) },
      ["vPages[0]", "[4, 1, 3, 8]"],
      "Hkv",
    );
    bad(ShapeError, { kPages: [k, k], vPages: [v] }, ["as many page buffers"], "buffer counts");
    const small = zeros([3, 2, 3, 8], { backend });
    bad(ShapeError, { kPages: [k, small, k], vPages: [v, small, v] }, [
      "kPages[1]",
      "every page buffer but the last",
    ], "uneven buffers");
    small.dispose();
    const f16 = zeros([4, 2, 3, 8], { dtype: "float16", backend });
    bad(DTypeError, { vPages: f16 }, ["float32", "float16"], "dtypes");
    f16.dispose();
    const q8 = zeros([4, 2, 3, 8], { dtype: "int8", backend });
    bad(DTypeError, { kPages: q8 }, ["int8"], "quantized pages");
    q8.dispose();
    const other = zeros([4, 2, 3, 8], {
      backend: backend.name === "cpu" ? twinOf(backend) : cpu(),
    });
    bad(BackendMismatchError, { vPages: other }, ["one backend"], "backends");
    other.dispose();
    bad(
      ArgumentError,
      { blockTable: [[0, 4], [3]] },
      ["blockTable[0][1] = 4", "[0, 4)"],
      "page id",
    );
    bad(ArgumentError, { blockTable: [[0, -1], [3]] }, ["blockTable[0][1] = -1"], "negative id");
    bad(ArgumentError, { blockTable: [[0], [3, 1]] }, ["blockTable[0][1]"], "short row");
    bad(ArgumentError, { blockTable: [[0, 1.5], [3]] }, ["blockTable[0][1]", "1.5"], "fraction");
    bad(ArgumentError, { blockTable: [[0, 1]] }, ["2 arrays"], "rows vs kvLens");
    bad(
      ShapeError,
      { kvLens: [7, 2] },
      ["kvLens[0] = 7", "3 blocks", "2 per sequence"],
      "length over the table",
    );
    bad(ArgumentError, { kvLens: [5, -1] }, ["kvLens[1]", "-1"], "negative length");
    bad(ArgumentError, { blockTable: Int32Array.of(0, 1, 3, 0) }, ["blockTableShape"], "no shape");
    bad(
      ShapeError,
      {
        blockTable: Int32Array.of(0, 1, 3),
        blockTableShape: [2, 2],
      },
      ["3 entries", "[2, 2]"],
      "shape vs entries",
    );
    // A page shared by two sequences (a common prefix) is fine.
    pagedKV({ ...ok, blockTable: [[0, 1], [0]] }).dispose();
    const kv = pagedKV(ok);
    kv.dispose();
    kv.dispose(); // twice is fine
    const q = zeros([2, 4, 1, 8], { backend });
    expectError(
      DisposedTensorError,
      () => leanAttention(q, kv),
      ["PagedKV", "dispose"],
      "disposed view",
    );
    const kv2 = pagedKV({ ...ok, kPages: zeros([4, 2, 3, 8], { backend }) });
    kv2.kPages[0].dispose();
    expectError(DisposedTensorError, () => flashAttention(q, kv2), [], "disposed page buffer");
    kv2.dispose();
    q.dispose();
  } finally {
    for (const t of [k, v, ...made]) t.dispose();
  }
  const after = backend.memory();
  strictEqual(after.liveBytes, before.liveBytes, "nothing left allocated");
});

Deno.test("pagedKV: a backend without the paged capabilities is named", () => {
  const plain = new Proxy(cpu(), {
    get(t, p) {
      if (p === "createIndexTable") return undefined;
      const v = Reflect.get(t, p, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
  const k = zeros([1, 1, 2, 4], { backend: plain });
  expectError(
    ArgumentError,
    () => pagedKV({ kPages: k, vPages: k, blockTable: [[0]], kvLens: [1] }),
    ["no paged K/V support", "createIndexTable"],
    "no capability",
  );
  expectError(
    ArgumentError,
    () => kvCache({ batch: 1, kvHeads: 1, headDim: 4, capacity: 8, backend: plain }),
    ["no paged K/V support"],
    "no capability (cache)",
  );
  k.dispose();
});

describeBackends("kvCache: bad sizes, dtypes and sequence indices are named errors", (backend) => {
  const ok = { batch: 2, kvHeads: 2, headDim: 8, pageSize: 4, capacity: 32, backend };
  const bad = (cls: Parameters<typeof expectError>[0], o: object, m: string[], what: string) =>
    expectError(cls, () => kvCache(anyOf({ ...ok, ...o })), m, what);
  bad(ArgumentError, { capacity: undefined }, ["capacity is required"], "no capacity");
  bad(ArgumentError, { batch: 0 }, ["batch", "positive integer"], "batch 0");
  bad(ArgumentError, { pageSize: 2.5 }, ["pageSize"], "pageSize");
  bad(ArgumentError, { pagesize: 4 }, ["pagesize", "pageSize"], "misspelt");
  // int8 and float8e4m3 caches are made (tests/quant_cache_test.ts).
  bad(DTypeError, { dtype: "float64" }, ["float64"], "unknown dtype");
  const cache = kvCache(ok);
  try {
    expectError(ArgumentError, () => cache.free(2), ["[0, 2)", "2"], "free index");
    expectError(ArgumentError, () => cache.fork(0, 0), ["differ"], "fork onto itself");
    expectError(ArgumentError, () => cache.fork(0, -1), ["to", "-1"], "fork index");
    const k = zeros([2, 2, 3, 8], { backend });
    cache.append(k, k, { lens: [3, 0] });
    expectError(
      ArgumentError,
      () => cache.fork(1, 0),
      ["holds 3 tokens", "free(0)"],
      "fork into non-empty",
    );
    k.dispose();
  } finally {
    cache.dispose();
  }
  const q = zeros([2, 4, 1, 8], { backend });
  expectError(
    DisposedTensorError,
    () => leanAttention(q, cache),
    ["KVCache", "dispose"],
    "disposed",
  );
  expectError(DisposedTensorError, () => cache.append(q, q), ["KVCache"], "append after dispose");
  q.dispose();
});

describeBackends(
  "kvCache.append: bad input is named and leaves the cache unchanged",
  async (backend) => {
    const cache = kvCache({ batch: 2, kvHeads: 2, headDim: 8, pageSize: 4, capacity: 16, backend });
    const k = tensor(Float32Array.from({ length: 2 * 2 * 5 * 8 }, (_, i) => Math.sin(i)), {
      shape: [2, 2, 5, 8],
      backend,
    });
    const q = tensor(Float32Array.from({ length: 2 * 4 * 8 }, (_, i) => Math.cos(i)), {
      shape: [2, 4, 1, 8],
      backend,
    });
    try {
      cache.append(k, k, { lens: [5, 2] }); // 2 + 1 of the 4 pages
      const lens = cache.lens;
      const free = cache.freePages;
      const ref = leanAttention(q, cache);
      const want = await ref.data();
      ref.dispose();
      const f16 = zeros([2, 2, 5, 8], { dtype: "float16", backend });
      const wrong = zeros([2, 1, 5, 8], { backend });
      const other = zeros([2, 2, 5, 8], {
        backend: backend.name === "cpu" ? twinOf(backend) : cpu(),
      });
      const cases: [Parameters<typeof expectError>[0], () => unknown, string[], string][] = [
        [ShapeError, () => cache.append(wrong, wrong), [
          "[B = 2, Hkv = 2, S, D = 8]",
          "[2, 1, 5, 8]",
        ], "shape"],
        [DTypeError, () => cache.append(f16, f16), ["float16", "float32"], "dtype"],
        [BackendMismatchError, () => cache.append(other, other), ["cache on"], "backend"],
        [
          ArgumentError,
          () => cache.append(k, k, { lens: [6, 0] }),
          ["lens[0]", "[0, 5]"],
          "lens > S",
        ],
        [ArgumentError, () => cache.append(k, k, { lens: [1] }), ["2 token counts"], "lens count"],
        [ArgumentError, () => cache.append(k, k, anyOf({ len: [1, 1] })), ["len"], "misspelt"],
        [ArgumentError, () => cache.append(anyOf(null), k), ["k must be a Tensor"], "not a tensor"],
        // 5 + 5 more tokens need 1 + 1 more pages; 1 is free.
        [LimitError, () => cache.append(k, k), [
          "out of capacity",
          "capacity 16 tokens",
          "unchanged",
        ], "capacity"],
      ];
      for (const [cls, f, m, what] of cases) {
        expectError(cls, f, m, what);
        strictEqual(cache.lens.join(), lens.join(), `${what}: lens unchanged`);
        strictEqual(cache.freePages, free, `${what}: free pages unchanged`);
        const out = leanAttention(q, cache);
        sameBits(await out.data(), want, `${what}: attention unchanged`);
        out.dispose();
      }
      for (const t of [f16, wrong, other]) t.dispose();
      cache.append(k, k, { lens: [3, 5] }); // what does fit still goes in
      strictEqual(cache.lens.join(), "8,7");
    } finally {
      k.dispose();
      q.dispose();
      cache.dispose();
    }
  },
);

describeBackends("attention over paged K/V: bad calls are named errors", (backend) => {
  const cache = kvCache({ batch: 2, kvHeads: 2, headDim: 8, pageSize: 4, capacity: 32, backend });
  const q = zeros([2, 4, 1, 8], { backend });
  try {
    for (const fn of [naiveAttention, flashAttention, leanAttention]) {
      const name = fn.name;
      const f = (qq: unknown, kv: unknown, o?: unknown) => anyOf(fn)(qq, kv, o);
      expectError(
        ArgumentError,
        () => f(q, cache, { kvLens: [1, 1] }),
        ["kvLens comes from"],
        `${name} kvLens`,
      );
      expectError(
        ArgumentError,
        () => anyOf(fn)(q, cache, {}, {}),
        ["(q, kv, opts)"],
        `${name} 4th arg`,
      );
      expectError(
        ArgumentError,
        () => f(q, cache, { kvLen: [1] }),
        ["kvLen"],
        `${name} misspelt`,
      );
      const q16 = zeros([2, 4, 1, 8], { dtype: "float16", backend });
      expectError(DTypeError, () => f(q16, cache), ["float16", "float32"], `${name} q dtype`);
      q16.dispose();
      const q1 = zeros([1, 4, 1, 8], { backend });
      expectError(ShapeError, () => f(q1, cache), ["batch"], `${name} batch`);
      q1.dispose();
      const qd = zeros([2, 4, 1, 16], { backend });
      expectError(ShapeError, () => f(qd, cache), ["head dim"], `${name} D`);
      qd.dispose();
      const qh = zeros([2, 3, 1, 8], { backend });
      expectError(ShapeError, () => f(qh, cache), ["multiple of Hkv"], `${name} GQA`);
      qh.dispose();
      const qo = zeros([2, 4, 1, 8], { backend: backend.name === "cpu" ? twinOf(backend) : cpu() });
      expectError(BackendMismatchError, () => f(qo, cache), ["paged K/V on"], `${name} backend`);
      qo.dispose();
    }
    // An empty cache is attention over no keys: out = 0.
    const out = leanAttention(q, cache);
    out.dispose();
  } finally {
    q.dispose();
    cache.dispose();
  }
});

Deno.test("WebGPU: a page tensor over one binding is a LimitError; so is a page over it", async () => {
  let gpu: Backend;
  try {
    gpu = await ownWebgpu({ partBytes: 4096 });
  } catch (e) {
    if (Deno.env.get("CI") === "true") throw e;
    console.warn(`skipped: ${e}`);
    return;
  }
  const big = zeros([40, 2, 4, 8], { backend: gpu }); // 10 KiB > 4 KiB: stored in parts
  expectError(
    LimitError,
    () => pagedKV({ kPages: big, vPages: big, blockTable: [[0]], kvLens: [1] }),
    ["larger than one device buffer binding", "array of page buffers", "kvCache"],
    "tensor in parts",
  );
  big.dispose();
  expectError(
    LimitError,
    () => kvCache({ batch: 1, kvHeads: 8, headDim: 64, pageSize: 16, capacity: 64, backend: gpu }),
    ["4096", "smaller pageSize"],
    "page over the binding",
  );
  // A cache over many bindings: its page buffers each fit one (4 KiB = 16 pages of 256 B).
  const cache = kvCache({
    batch: 1,
    kvHeads: 2,
    headDim: 8,
    pageSize: 4,
    capacity: 400,
    backend: gpu,
  });
  strictEqual(cache.pagesPerBuffer, 16);
  assert(cache.pages === 100);
  const qBig = zeros([1, 4, 64, 8], { backend: gpu }); // 8 KiB: q in parts
  expectError(LimitError, () => leanAttention(qBig, cache), ["q [1, 4, 64, 8]"], "q in parts");
  qBig.dispose();
  cache.dispose();
});
