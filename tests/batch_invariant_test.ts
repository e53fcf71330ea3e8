/**
 * `batchInvariant: true` (VARIANTS.md, "Batch invariance"; issue #20 item 3): a sequence's
 * output and lse bits depend only on its own q, K, V and length — not on the batch around
 * it, its place in the batch, the grid or the split. Property: for a random ragged batch,
 * every sequence's bits equal those of the sequence run alone, in a shuffled batch, with
 * other sequences added and with another grid. The same comparison without the option is
 * printed as information (bits do change there: cuts follow the whole batch).
 */
import { ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { flashAttention, leanAttention, type Tensor, tensor } from "../mod.ts";
import type { Backend } from "../backends/backend.ts";
import { maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { rng } from "./_paged.ts";

interface Seq {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  len: number;
}

const Hq = 4, Hkv = 2, D = 32;

function draw(len: number, N: number, seed: number): Seq {
  const r = rng(seed);
  const f = (n: number) => Float32Array.from({ length: n }, () => 4 * r() - 2);
  const k = f(Hkv * N * D), v = f(Hkv * N * D);
  return { q: f(Hq * D), k, v, len };
}

/** The batch `[B, H, N, D]` of the sequences (each padded to N), on `backend`. */
function batch(seqs: Seq[], N: number, dtype: "float32" | "float16", backend: Backend) {
  const cat = (pick: (s: Seq) => Float32Array, H: number, n: number) => {
    const out = new Float32Array(seqs.length * H * n * D);
    seqs.forEach((s, b) => {
      const src = pick(s);
      for (let h = 0; h < H; h++) {
        const from = h * (src.length / H);
        out.set(src.subarray(from, from + n * D), (b * H + h) * n * D);
      }
    });
    return out;
  };
  const mk = (x: Float32Array, H: number, n: number): Tensor =>
    tensor(x, { shape: [seqs.length, H, n, D], dtype, backend });
  return {
    q: mk(cat((s) => s.q, Hq, 1), Hq, 1),
    k: mk(cat((s) => s.k, Hkv, N), Hkv, N),
    v: mk(cat((s) => s.v, Hkv, N), Hkv, N),
    kvLens: seqs.map((s) => s.len),
  };
}

type Run = (
  seqs: Seq[],
  opts: Record<string, unknown>,
) => Promise<{ out: Float32Array; lse: Float32Array }[]>;

function runner(
  backend: Backend,
  algo: "lean" | "flash",
  N: number,
  dtype: "float32" | "float16",
): Run {
  return async (seqs, opts) => {
    const t = batch(seqs, N, dtype, backend);
    const o = { kvLens: t.kvLens, returnLse: true as const, ...opts };
    const r = algo === "lean" ? leanAttention(t.q, t.k, t.v, o) : flashAttention(t.q, t.k, t.v, o);
    const out = await r.out.data(), lse = await r.lse.data();
    for (const x of [t.q, t.k, t.v, r.out, r.lse]) x.dispose();
    return seqs.map((_, b) => ({
      out: out.slice(b * Hq * D, (b + 1) * Hq * D),
      lse: lse.slice(b * Hq, (b + 1) * Hq),
    }));
  };
}

const sameBits = (a: Float32Array, b: Float32Array) => a.every((x, i) => Object.is(x, b[i]));

describeBackends(
  "batchInvariant: a sequence's bits do not depend on its batch",
  async (backend) => {
    const seed = Date.now() % 1e9;
    console.log(`fast-check seed ${seed}`);
    let changedWithout = 0, comparedWithout = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 9000 }), { minLength: 2, maxLength: 4 }),
        fc.constantFrom("lean" as const, "flash" as const),
        fc.constantFrom("float32" as const, "float16" as const),
        fc.integer({ min: 1, max: 1e6 }),
        fc.integer({ min: 1, max: 40 }),
        async (lens, algo, dtype, s0, grid) => {
          const N = Math.max(1, ...lens);
          const seqs = lens.map((n, i) => draw(n, N, s0 + i));
          const extra = draw(N, N, s0 + 99);
          const run = runner(backend, algo, N, dtype);
          const g = (x: number) => (algo === "lean" ? { grid: x } : {});
          const inv = { batchInvariant: true };
          const base = await run(seqs, { ...inv, ...g(grid) });
          const order = seqs.map((_, i) => i).reverse();
          const shuffled = await run(order.map((i) => seqs[i]), { ...inv, ...g(grid + 7) });
          const more = await run([extra, ...seqs, extra], { ...inv, ...g(3 * grid) });
          for (const [b, s] of seqs.entries()) {
            const alone = (await run([s], { ...inv, ...g(1) }))[0];
            for (
              const [what, got] of [
                ["in a shuffled batch", shuffled[order.indexOf(b)]],
                ["with other sequences added", more[b + 1]],
                ["alone", alone],
              ] as const
            ) {
              assert(
                sameBits(base[b].out, got.out) && sameBits(base[b].lse, got.lse),
                `${algo} ${dtype} lens [${lens}] grid ${grid}: sequence ${b} ${what} differs by ` +
                  `${maxAbsDiff(base[b].out, got.out)} (seed ${seed})`,
              );
            }
            // And it is attention: the float64 reference of the sequence alone.
            const ref = referenceAttention({
              q: s.q,
              k: s.k,
              v: s.v,
              B: 1,
              Hq,
              Hkv,
              Sq: 1,
              N,
              D,
              kvLens: [s.len],
            });
            const tol = dtype === "float16" ? 2e-2 : 1e-4;
            assert(maxAbsDiff(base[b].out, ref.out) <= tol, `${algo} ${dtype}: far from reference`);
          }
          if (algo === "lean") {
            const a = await run(seqs, g(grid));
            const c = await run([extra, ...seqs, extra], g(3 * grid));
            seqs.forEach((_, b) => {
              comparedWithout++;
              if (!sameBits(a[b].out, c[b + 1].out)) changedWithout++;
            });
          }
        },
      ),
      { seed, numRuns: numRuns(backend, 24) },
    );
    console.log(
      `  without batchInvariant: ${changedWithout} of ${comparedWithout} lean sequences changed ` +
        `bits when other sequences were added (information)`,
    );
  },
);

Deno.test("batchInvariant: a long sequence (longer pieces) keeps its bits in any batch [cpu]", async () => {
  const { cpu } = await import("../backends/cpu/cpu_backend.ts");
  const backend = cpu();
  // 100k keys: pieces of 8192 keys (invariantChunkKeys), 13 of them, merged left to right.
  const N = 100_000;
  const long = draw(N, N, 5), short = draw(3000, N, 6);
  const run = runner(backend, "lean", N, "float32");
  const alone = (await run([long], { batchInvariant: true, grid: 3 }))[0];
  const inBatch = (await run([short, long, short], { batchInvariant: true, grid: 17 }))[1];
  assert(sameBits(alone.out, inBatch.out) && sameBits(alone.lse, inBatch.lse));
});
