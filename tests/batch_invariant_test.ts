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
import { flashAttention, kvCache, leanAttention, quantize, type Tensor, tensor } from "../mod.ts";
import type { Backend } from "../backends/backend.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { rng } from "./_paged.ts";

interface Seq {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  len: number;
}

/**
 * Heads and head dim: GQA groups of 2 and of 4, and multi-head. On WebGPU units of two or more
 * rows run in the subgroup-fold order, one-row units piece by piece (`AttentionTuning.foldOrder`).
 */
interface Shape {
  Hq: number;
  Hkv: number;
  D: number;
}
const SHAPES: readonly Shape[] = [
  { Hq: 4, Hkv: 2, D: 32 },
  { Hq: 8, Hkv: 2, D: 64 },
  { Hq: 2, Hkv: 2, D: 32 },
];

function draw({ Hq, Hkv, D }: Shape, len: number, N: number, seed: number): Seq {
  const r = rng(seed);
  const f = (n: number) => Float32Array.from({ length: n }, () => 4 * r() - 2);
  const k = f(Hkv * N * D), v = f(Hkv * N * D);
  return { q: f(Hq * D), k, v, len };
}

/** The batch `[B, H, N, D]` of the sequences (each padded to N), on `backend`. */
function batch(
  { Hq, Hkv, D }: Shape,
  seqs: Seq[],
  N: number,
  dtype: "float32" | "float16",
  backend: Backend,
) {
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
  shape: Shape,
  backend: Backend,
  algo: "lean" | "flash",
  N: number,
  dtype: "float32" | "float16",
): Run {
  return async (seqs, opts) => {
    const { Hq, D } = shape;
    const t = batch(shape, seqs, N, dtype, backend);
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

/**
 * Runs `f` with WebGPU's batch-invariant order of multi-row units chosen
 * (`AttentionTuning.foldOrder`: the subgroup-fold order, or piece by piece) and, where given,
 * its piece rule (`AttentionTuning.invariantPiece`, `invariantPieces`); other backends have
 * one order and one rule.
 */
async function withFoldOrder<T>(
  backend: Backend,
  fold: boolean,
  f: () => Promise<T>,
  pieces?: readonly [number, number],
) {
  if (!("attentionTuning" in backend)) return await f();
  const b = backend as Backend & { attentionTuning: Record<string, unknown> };
  const was = b.attentionTuning;
  const [invariantPiece, invariantPieces] = pieces ?? [];
  b.attentionTuning = { ...was, foldOrder: fold, invariantPiece, invariantPieces };
  try {
    return await f();
  } finally {
    b.attentionTuning = was;
  }
}

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
        fc.constantFrom(...SHAPES),
        fc.boolean(),
        fc.constantFrom(undefined, [256, 16] as const, [128, 32] as const),
        (lens, algo, dtype, s0, grid, shape, fold, piece) =>
          withFoldOrder(backend, fold, async () => {
            const { Hq, Hkv, D } = shape;
            const N = Math.max(1, ...lens);
            const seqs = lens.map((n, i) => draw(shape, n, N, s0 + i));
            const extra = draw(shape, N, N, s0 + 99);
            const run = runner(shape, backend, algo, N, dtype);
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
                  `${algo} ${dtype} ${Hq}/${Hkv} heads D ${D}${fold ? " foldOrder" : ""}${
                    piece ? ` piece ${piece}` : ""
                  } lens [${lens}] grid ${grid}: sequence ${b} ${what} differs by ` +
                    `${maxAbsDiff(base[b].out, got.out)} (seed ${seed})`,
                );
              }
              // And it is attention: the float64 reference of the sequence alone.
              // The reference sees the stored (rounded) inputs.
              const st = (x: Float32Array) => dtype === "float16" ? x.map(Math.f16round) : x;
              const ref = referenceAttention({
                q: st(s.q),
                k: st(s.k),
                v: st(s.v),
                B: 1,
                Hq,
                Hkv,
                Sq: 1,
                N,
                D,
                kvLens: [s.len],
              });
              const tol = attentionTolerances(ref, s.len, dtype);
              const [eo, el] = [maxAbsDiff(base[b].out, ref.out), maxAbsDiff(base[b].lse, ref.lse)];
              assert(
                eo <= tol.out && el <= tol.lse,
                `${algo} ${dtype} ${Hq}/${Hkv} heads D ${D}${fold ? " foldOrder" : ""}${
                  piece ? ` piece ${piece}` : ""
                } lens [${lens}] grid ${grid}: sequence ${b} off the reference by ` +
                  `${eo} (out, bound ${tol.out}), ${el} (lse, bound ${tol.lse}) (seed ${seed})`,
              );
            }
            if (algo === "lean") {
              const a = await run(seqs, g(grid));
              const c = await run([extra, ...seqs, extra], g(3 * grid));
              seqs.forEach((_, b) => {
                comparedWithout++;
                if (!sameBits(a[b].out, c[b + 1].out)) changedWithout++;
              });
            }
          }, piece),
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
  const long = draw(SHAPES[0], N, N, 5), short = draw(SHAPES[0], 3000, N, 6);
  const run = runner(SHAPES[0], backend, "lean", N, "float32");
  const alone = (await run([long], { batchInvariant: true, grid: 3 }))[0];
  const inBatch = (await run([short, long, short], { batchInvariant: true, grid: 17 }))[1];
  assert(sameBits(alone.out, inBatch.out) && sameBits(alone.lse, inBatch.lse));
});

describeBackends(
  "batchInvariant: a NaN key poisons its own rows only, wherever the pieces run",
  async (backend) => {
    // Four-row units (the GPU's fold order publishes per-subgroup states where a unit is cut):
    // a NaN in one key of sequence 1's first kv head makes that head group's rows NaN (a
    // visible NaN score), and nothing else, alone or in a batch, over any grid.
    const shape = SHAPES[1];
    const { Hq, Hkv, D } = shape;
    const N = 5000;
    const seqs = [draw(shape, 3000, N, 11), draw(shape, N, N, 12), draw(shape, 2500, N, 13)];
    seqs[1].k[4100 * D + 7] = NaN;
    for (const [algo, fold] of [["lean", true], ["flash", true], ["lean", false]] as const) {
      await withFoldOrder(backend, fold, async () => {
        const run = runner(shape, backend, algo, N, "float32");
        const opts = (grid: number) => ({
          batchInvariant: true,
          ...(algo === "lean" ? { grid } : {}),
        });
        const base = await run(seqs, opts(5));
        for (const [b, s] of seqs.entries()) {
          const ref = referenceAttention({
            ...shape,
            q: s.q,
            k: s.k,
            v: s.v,
            B: 1,
            Sq: 1,
            N,
            kvLens: [s.len],
          });
          const nan = ref.out.map((x) => (Number.isNaN(x) ? 1 : 0)).reduce((a, x) => a + x, 0);
          assert(b !== 1 || nan === (Hq / Hkv) * D, `the case poisons one head group (${nan})`);
          const got = base[b].out;
          assert(
            got.every((x, i) => Number.isNaN(x) === Number.isNaN(ref.out[i])),
            `${algo} fold ${fold}: sequence ${b}'s NaN outputs differ from the reference's`,
          );
          const finite = (x: ArrayLike<number>) =>
            Array.from(x).map((y) => (Number.isNaN(y) ? 0 : y));
          const tol = attentionTolerances(
            { out: finite(ref.out), lse: ref.lse, mag: ref.mag },
            s.len,
            "float32",
          );
          assert(
            maxAbsDiff(finite(got), finite(ref.out)) <= tol.out,
            `${algo} fold ${fold}: sequence ${b} off the reference`,
          );
          for (
            const [what, other] of [
              ["alone", (await run([s], opts(1)))[0]],
              ["in a larger grid", (await run(seqs, opts(29)))[b]],
              ["in another batch", (await run([seqs[2], s, seqs[0]], opts(11)))[1]],
            ] as const
          ) {
            assert(
              sameBits(got, other.out) && sameBits(base[b].lse, other.lse),
              `${algo} fold ${fold}: sequence ${b}'s bits change ${what}`,
            );
          }
        }
      });
    }
  },
);

describeBackends(
  "batchInvariant over a paged cache and over int8 K/V: the bits of the contiguous call, of the sequence alone",
  (backend) =>
    withFoldOrder(backend, true, async () => {
      // Four-row units again, in the subgroup-fold order on WebGPU. A paged cache holds the
      // same values as contiguous K/V: same cuts, same kernel, same bits. int8 K/V (one scale
      // a token: a sequence's quantization does not depend on the batch) keep a sequence's
      // bits alone and in a batch.
      const shape = SHAPES[1];
      const { Hkv, D } = shape;
      const N = 5000;
      const seqs = [draw(shape, 3000, N, 21), draw(shape, N, N, 22), draw(shape, 2500, N, 23)];
      const t = batch(shape, seqs, N, "float32", backend);
      const inv = (grid: number) => ({ batchInvariant: true, grid, kvLens: t.kvLens });
      const contiguous = leanAttention(t.q, t.k, t.v, inv(7));
      const cache = kvCache({
        batch: 3,
        kvHeads: Hkv,
        headDim: D,
        pageSize: 16,
        capacity: 3 * N,
        backend,
      });
      cache.append(t.k, t.v, { lens: t.kvLens });
      const paged = leanAttention(t.q, cache, { batchInvariant: true, grid: 13 });
      assert(
        sameBits(await contiguous.data(), await paged.data()),
        "paged differs from contiguous",
      );
      const [kq, vq] = [quantize(t.k, { dtype: "int8" }), quantize(t.v, { dtype: "int8" })];
      const outAll = leanAttention(t.q, kq, vq, inv(5));
      const all = await outAll.data();
      for (const b of [0, 1, 2]) {
        const one = batch(shape, [seqs[b]], N, "float32", backend);
        const [k1, v1] = [quantize(one.k, { dtype: "int8" }), quantize(one.v, { dtype: "int8" })];
        const outAlone = leanAttention(one.q, k1, v1, {
          batchInvariant: true,
          grid: 2,
          kvLens: one.kvLens,
        });
        const alone = await outAlone.data();
        const rows = alone.length;
        assert(
          sameBits(all.slice(b * rows, (b + 1) * rows), alone),
          `int8: sequence ${b} alone differs`,
        );
        for (const x of [one.q, one.k, one.v, k1.data, k1.scale, v1.data, v1.scale, outAlone]) {
          x.dispose();
        }
      }
      for (
        const x of [t.q, t.k, t.v, contiguous, paged, kq.data, kq.scale, vq.data, vq.scale, outAll]
      ) {
        x.dispose();
      }
      cache.dispose();
    }),
);
