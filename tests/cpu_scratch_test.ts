/**
 * Attention scratch is sized by the keys a call visits, not by `tileSize` (#19 item 5): a
 * legal `tileSize: 2³⁰` over N = 2²⁵ stored keys of which one is used ran the CPU's
 * WebAssembly memory into `RangeError: WebAssembly.Memory.grow()`; it now needs one key of
 * scratch. Scratch a thread keeps between calls stays within `SCRATCH_POOL_BYTES` (a call
 * needing more gets memory of its own, freed with it) and `memory().pooledBytes` counts it.
 * Results against the float64 reference with huge tiles over ragged lengths, both backends.
 */
import { ok as assert } from "node:assert/strict";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { tensor, zeros } from "../tensor/creation.ts";
import { normals } from "../tensor/random.ts";
import { SCRATCH_POOL_BYTES } from "../backends/cpu/_attention_simd.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends, settleGarbage } from "./_backends.ts";

describeBackends("a tile size far over the keys visited: right, and small scratch", async (b) => {
  const [B, H, N, D] = [3, 2, 700, 8];
  const kvLens = [3, 700, 1];
  const q = normals(B * H * D, 1);
  const k = normals(B * H * N * D, 2);
  const v = normals(B * H * N * D, 3);
  const ref = referenceAttention({ q, k, v, B, Hq: H, Hkv: H, Sq: 1, N, D, kvLens });
  const backend = b;
  const qt = tensor(q, { shape: [B, H, 1, D], backend });
  const kt = tensor(k, { shape: [B, H, N, D], backend });
  const vt = tensor(v, { shape: [B, H, N, D], backend });
  // float32 arithmetic over ≤ 700 keys: a few ulps of |out| ≤ max |v|.
  const tol = 64 * 2 ** -24 * Math.sqrt(N) * maxAbs(v);
  for (const tileSize of [2 ** 30, 2 ** 20, 701]) {
    for (
      const out of [
        flashAttention(qt, kt, vt, { kvLens, blockN: tileSize }),
        leanAttention(qt, kt, vt, { kvLens, tileSize, grid: 4 }),
      ]
    ) {
      const err = maxAbsDiff(await out.data(), ref.out);
      out.dispose();
      assert(err <= tol, `tileSize ${tileSize}: error ${err} over ${tol}`);
    }
  }
  for (const t of [qt, kt, vt]) t.dispose();
});

Deno.test({
  name: "cpu: tileSize 2^30 over N = 2^25 keys, one visited, runs; scratch stays bounded",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { cpu } = await import("../backends/cpu/cpu_backend.ts");
    const backend = cpu();
    await settleGarbage();
    const start = backend.memory();
    // K/V of 1 GiB each, never written: the pages stay untouched (zeros).
    const N = 2 ** 25;
    const q = tensor(normals(8, 5), { shape: [1, 1, 1, 8], backend });
    const k = zeros([1, 1, N, 8], { backend });
    const v = zeros([1, 1, N, 8], { backend });
    const r = flashAttention(q, k, v, { kvLens: [1], blockN: 2 ** 30, returnLse: true });
    // One key: the output is its value (0) and the lse its score (0).
    assert((await r.out.data()).every((x) => x === 0), "out");
    assert((await r.lse.data()).every((x) => x === 0), "lse");
    for (const t of [q, k, v, r.out, r.lse]) t.dispose();
    const afterOne = backend.memory();
    assert(afterOne.liveBytes === start.liveBytes, "live bytes not returned");
    // The SIMD kernels keep their (small) scratch, and memory() says so.
    assert(afterOne.pooledBytes > 0, "pooledBytes does not count the attention scratch");
    assert(afterOne.pooledBytes <= SCRATCH_POOL_BYTES, `kept ${afterOne.pooledBytes} bytes`);
    // A call whose tiles need ~170 MB of scratch (2^20 keys a tile, D 8) gets its own memory:
    // what the thread keeps afterwards is still within the bound.
    const M = 2 ** 20;
    const q2 = tensor(normals(8, 6), { shape: [1, 1, 1, 8], backend });
    const k2 = tensor(normals(M * 8, 7), { shape: [1, 1, M, 8], backend });
    const v2 = tensor(normals(M * 8, 8), { shape: [1, 1, M, 8], backend });
    const o2 = flashAttention(q2, k2, v2, { blockN: 2 ** 30 });
    const o2ref = flashAttention(q2, k2, v2, { blockN: 2 ** 20 });
    assert(maxAbsDiff(await o2.data(), await o2ref.data()) === 0, "same tiles, same bits");
    for (const t of [q2, k2, v2, o2, o2ref]) t.dispose();
    const end = backend.memory();
    assert(end.liveBytes === start.liveBytes, "live bytes not returned");
    assert(end.pooledBytes <= SCRATCH_POOL_BYTES, `kept ${end.pooledBytes} bytes after a big call`);
  },
});
