/**
 * `rope` against a float64 rotation computed from VARIANTS.md directly: both pair
 * conventions, partial rotaryDim, per-batch offsets, explicit positions, θ, caller tables,
 * float32 and float16, CPU and WebGPU. Plus the named errors of bad options.
 */
import { ok as assert, throws } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  ArgumentError,
  LeanattnError,
  rope,
  type RopeOptions,
  ShapeError,
  tensor,
} from "../mod.ts";
import { normals } from "../tensor/random.ts";
import { describeBackends, numRuns } from "./_backends.ts";

/** float64 rope of row-major x [B, H, S, D] with positions pos[b][s] and frequencies f[k]. */
function reference(
  x: Float32Array,
  [B, H, S, D]: number[],
  pos: number[][],
  angle: (p: number, k: number) => [number, number],
  rd: number,
  interleaved: boolean,
): Float64Array {
  const out = Float64Array.from(x);
  const half = rd / 2;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < S; s++) {
        const base = ((b * H + h) * S + s) * D;
        for (let k = 0; k < half; k++) {
          const i0 = base + (interleaved ? 2 * k : k);
          const i1 = base + (interleaved ? 2 * k + 1 : k + half);
          const [c, sn] = angle(pos[b][s], k);
          out[i0] = x[i0] * c - x[i1] * sn;
          out[i1] = x[i0] * sn + x[i1] * c;
        }
      }
    }
  }
  return out;
}

describeBackends("rope equals the float64 rotation (conventions, positions, tables)", async (b) => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        B: fc.integer({ min: 1, max: 3 }),
        H: fc.integer({ min: 1, max: 3 }),
        S: fc.integer({ min: 1, max: 5 }),
        halfD: fc.integer({ min: 1, max: 12 }),
        rdFrac: fc.double({ min: 0.01, max: 1, noNaN: true }),
        interleaved: fc.boolean(),
        mode: fc.constantFrom("none", "offset", "offsets", "positions", "perBatch", "tables"),
        base: fc.integer({ min: 0, max: 600_000 }),
        theta: fc.oneof(fc.constant(undefined), fc.double({ min: 100, max: 1e6, noNaN: true })),
        dtype: fc.constantFrom("float32" as const, "float16" as const),
        seed: fc.integer({ min: 0, max: 1e6 }),
      }),
      async (c) => {
        const D = 2 * c.halfD;
        const rd = 2 * Math.max(1, Math.round(c.halfD * c.rdFrac));
        const shape = [c.B, c.H, c.S, D];
        const x = tensor(normals(c.B * c.H * c.S * D, c.seed), {
          shape,
          dtype: c.dtype,
          backend: b,
        });
        const stored = await x.data();
        const pos = Array.from({ length: c.B }, (_, bb) =>
          Array.from({ length: c.S }, (_, s) => {
            if (c.mode === "none") return s;
            if (c.mode === "offset") return c.base + s;
            if (c.mode === "offsets") return c.base + 7 * bb + s;
            if (c.mode === "perBatch") return c.base + 7 * bb + 3 * s;
            if (c.mode === "positions") return c.base + 5 * s;
            return (c.base % 50) + s; // tables: small positions
          }));
        const theta = c.theta ?? 10000;
        const angle = (p: number, k: number): [number, number] => {
          const a = p * Math.pow(theta, (-2 * k) / rd);
          return [Math.cos(a), Math.sin(a)];
        };
        const opts: RopeOptions = { rotaryDim: rd, interleaved: c.interleaved };
        const made = [x];
        if (c.theta !== undefined && c.mode !== "tables") opts.theta = c.theta;
        if (c.mode === "offset") opts.offset = c.base;
        if (c.mode === "offsets") opts.offset = pos.map((r) => r[0]);
        if (c.mode === "positions") opts.positions = pos[0];
        if (c.mode === "perBatch") opts.positions = pos;
        if (c.mode === "tables") {
          const maxPos = 60;
          const cs = new Float32Array(maxPos * (rd / 2));
          const sn = new Float32Array(maxPos * (rd / 2));
          for (let p = 0; p < maxPos; p++) {
            for (let k = 0; k < rd / 2; k++) [cs[p * rd / 2 + k], sn[p * rd / 2 + k]] = angle(p, k);
          }
          opts.cos = tensor(cs, { shape: [maxPos, rd / 2], backend: b });
          opts.sin = tensor(sn, { shape: [maxPos, rd / 2], backend: b });
          opts.positions = pos;
          made.push(opts.cos, opts.sin);
        }
        const before = b.memory().liveCount;
        const y = rope(x, opts);
        const got = await y.data();
        y.dispose();
        assert(b.memory().liveCount === before, "rope leaked a temporary");
        const want = reference(stored, shape, pos, angle, rd, c.interleaved);
        for (let i = 0; i < want.length; i++) {
          // Rounding: f32 tables and products (a few ulps of |a| + |b|), then the store.
          const mag = Math.abs(stored[i]) + Math.abs(stored[i ^ 1]) + Math.abs(want[i]) + 1e-30;
          const tol = 4 * 2 ** -24 * 4 * mag +
            (c.dtype === "float16" ? 2 ** -11 * Math.abs(want[i]) : 0);
          assert(
            Math.abs(got[i] - want[i]) <= tol + 3 * 2 ** -24 * mag,
            `seed ${c.seed} ${JSON.stringify({ ...c, D, rd })}: [${i}] ${got[i]} vs ${want[i]}`,
          );
        }
        for (const t of made) t.dispose();
      },
    ),
    { numRuns: numRuns(b, 60) },
  );
});

describeBackends("rope: bad options are named errors", (b) => {
  const x = tensor(normals(2 * 2 * 3 * 8, 1), { shape: [2, 2, 3, 8], backend: b });
  const bad = (opts: unknown, cls: typeof LeanattnError, word: string) =>
    throws(() => rope(x, opts as RopeOptions), (e: unknown) => {
      assert(e instanceof cls, `${JSON.stringify(opts)}: ${e}`);
      assert((e as Error).message.includes(word), `${(e as Error).message} lacks ${word}`);
      return true;
    });
  bad({ rotaryDim: 3 }, ArgumentError, "even");
  bad({ rotaryDim: 10 }, ArgumentError, "D = 8");
  bad({ offset: -1 }, ArgumentError, "non-negative");
  bad({ offset: [1] }, ArgumentError, "2 entries");
  bad({ offset: 1, positions: [0, 1, 2] }, ArgumentError, "not both");
  bad({ positions: [[0, 1]] }, ShapeError, "[B = 2][S = 3]");
  bad({ theta: 0 }, ArgumentError, "theta");
  bad({ interleave: true }, ArgumentError, '"interleave"');
  bad({ offset: 2 ** 24 }, LeanattnError, "2^24");
  const cs = tensor(new Float32Array(8), { shape: [2, 4], backend: b });
  bad({ cos: cs }, ArgumentError, "sin");
  bad({ cos: cs, sin: cs, positions: [0, 1, 2] }, ArgumentError, "past the 2 rows");
  throws(() => rope(tensor([1, 2]) as never), ShapeError);
  cs.dispose();
  x.dispose();
});
