/**
 * The CPU attention executor's WebAssembly kernels (backends/cpu/_attention_simd.ts) against
 * plain float64 loops: float16 conversion over every bit pattern, and the scores / P·V kernels
 * on random shapes (row pairing, key tails, per-row key counts, padding widths).
 */
import { ok as assert } from "node:assert/strict";
import fc from "fast-check";
import {
  disableSimdKernelsForTesting,
  instantiateSimdKernels,
  type SimdKernels,
} from "../backends/cpu/_attention_simd.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { randn } from "../tensor/creation.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";

/** Fills a view in place (`map` would make a copy outside the wasm memory). */
function fill<A extends Float64Array | Float32Array | Int32Array>(a: A, f: () => number): A {
  for (let i = 0; i < a.length; i++) a[i] = f();
  return a;
}

/**
 * cvt16 over `patterns` (a multiple of 8) against Float16Array. The kernel takes a fast pass
 * for tiles of finite halves and redoes a tile exactly when it holds an inf or NaN, so both
 * a finite-only run and a run over every pattern are checked.
 */
function cvt16Check(K: SimdKernels, patterns: number[], what: string): void {
  const n = patterns.length;
  const need = n * 6 + 16;
  if (K.memory.buffer.byteLength < need) {
    K.memory.grow(Math.ceil((need - K.memory.buffer.byteLength) / 65536));
  }
  const bits = new Uint16Array(K.memory.buffer, 0, n);
  bits.set(patterns);
  const halves = new Float16Array(K.memory.buffer, 0, n);
  const dst = Math.ceil((n * 2) / 16) * 16;
  K.cvt16(0, dst, n);
  const got = new Float32Array(K.memory.buffer, dst, n);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < n; i++) {
    const want = halves[i];
    const same = Number.isNaN(want) ? Number.isNaN(got[i]) : Object.is(got[i], want);
    if (!same) {
      bad++;
      if (first < 0) first = i;
    }
  }
  const at = first < 0 ? "" : `, first 0x${patterns[first].toString(16)}: got ${got[first]}`;
  assert(bad === 0, `${what}: ${bad} patterns wrong${at}`);
}

function cvt16Spec(K: SimdKernels): void {
  const all = Array.from({ length: 65536 }, (_, i) => i);
  cvt16Check(K, all.filter((h) => (h & 0x7c00) !== 0x7c00), "finite halves");
  cvt16Check(K, all, "all halves");
  // one NaN in the last of 8 values: the fast pass runs over the tile, then the exact one
  cvt16Check(K, [0x3c00, 0x8001, 0x0001, 0x7bff, 0xfbff, 0x0400, 0x8000, 0x7e01], "a NaN last");
}

function kernelsSpec(K: SimdKernels): void {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }), // R
      fc.integer({ min: 1, max: 11 }), // n
      fc.constantFrom(16, 32, 48), // Dp
      fc.integer({ min: 0, max: 2 ** 31 - 1 }), // seed
      fc.boolean(), // equal key counts (the paired-row path)
      (R, n, Dp, seed, equal) => {
        const T = n + 3;
        let st = seed | 0;
        const rnd = () => ((st = (Math.imul(st, 1103515245) + 12345) | 0) >>> 0) / 2 ** 32 - 0.5;
        let at = 0;
        const take = (bytes: number) => {
          const here = at;
          at += Math.ceil(bytes / 16) * 16;
          return here;
        };
        const [q, k, v, s, o, al, cn] = [
          take(R * Dp * 8),
          take(n * Dp * 4),
          take(n * Dp * 4),
          take(R * T * 8),
          take(R * Dp * 8),
          take(R * 8),
          take(R * 4),
        ];
        if (K.memory.buffer.byteLength < at) {
          K.memory.grow(Math.ceil((at - K.memory.buffer.byteLength) / 65536));
        }
        const m = K.memory.buffer;
        const Q = fill(new Float64Array(m, q, R * Dp), rnd);
        const Kt = fill(new Float32Array(m, k, n * Dp), rnd);
        const V = fill(new Float32Array(m, v, n * Dp), rnd);
        const O = fill(new Float64Array(m, o, R * Dp), rnd);
        const O0 = O.slice();
        const A = fill(new Float64Array(m, al, R), () => 0.5 + rnd());
        const C = fill(
          new Int32Array(m, cn, R),
          () => equal ? n : Math.floor((rnd() + 0.5) * (n + 1)),
        );
        K.scores(q, k, s, R, n, Dp, T);
        const S = new Float64Array(m, s, R * T);
        for (let r = 0; r < R; r++) {
          for (let j = 0; j < n; j++) {
            let want = 0, mag = 0;
            for (let d = 0; d < Dp; d++) {
              want += Q[r * Dp + d] * Kt[j * Dp + d];
              mag += Math.abs(Q[r * Dp + d] * Kt[j * Dp + d]);
            }
            const got = S[r * T + j];
            assert(Math.abs(got - want) <= 1e-14 * mag, `s[${r},${j}] ${got} vs ${want}`);
          }
        }
        K.pv(s, v, o, al, cn, R, Dp, T);
        for (let r = 0; r < R; r++) {
          for (let d = 0; d < Dp; d++) {
            let want = O0[r * Dp + d] * A[r], mag = Math.abs(want);
            for (let j = 0; j < C[r]; j++) {
              want += S[r * T + j] * V[j * Dp + d];
              mag += Math.abs(S[r * T + j] * V[j * Dp + d]);
            }
            const got = O[r * Dp + d];
            assert(Math.abs(got - want) <= 1e-14 * mag, `o[${r},${d}] ${got} vs ${want}`);
          }
        }
      },
    ),
    { numRuns: 300 },
  );
}

function pexpSpec(K: SimdKernels): void {
  const specials = [0, -0, -1e-300, -1e-10, -0.3465, -0.3466, -1, -700, -707.9, -708, -708.1];
  const extra = [-746, -1e6, -Infinity];
  fc.assert(
    fc.property(
      fc.array(fc.double({ min: -800, max: 0, noNaN: true }), { minLength: 0, maxLength: 40 }),
      fc.double({ min: -5, max: 5, noNaN: true }),
      fc.boolean(),
      (xs, shift, withNaN) => {
        const rows = [
          [...specials, ...xs].map((x) => x + shift),
          [...extra, ...xs].map((x) => x + shift),
          withNaN ? [...xs, NaN].map((x) => x + shift) : [],
        ];
        const R = rows.length;
        const T = Math.max(...rows.map((r) => r.length)) + 1;
        const need = R * T * 8 + 64;
        if (K.memory.buffer.byteLength < need) {
          K.memory.grow(Math.ceil((need - K.memory.buffer.byteLength) / 65536));
        }
        const m = K.memory.buffer;
        const S = new Float64Array(m, 0, R * T).fill(1234.5);
        const at = R * T * 8;
        const C = new Int32Array(m, at, R);
        const MX = new Float64Array(m, at + 16, R);
        const SUM = new Float64Array(m, at + 48, R);
        rows.forEach((row, r) => {
          S.set(row, r * T);
          C[r] = row.length;
          MX[r] = shift;
        });
        K.pexp(0, R, T, at, at + 16, at + 48);
        rows.forEach((row, r) => {
          let want = 0;
          row.forEach((x, j) => {
            const e = Math.exp(x - shift);
            want += e;
            const got = S[r * T + j];
            if (Number.isNaN(e)) assert(Number.isNaN(got), `exp(${x - shift}) = ${got}`);
            else if (x - shift < -708) assert(got === 0, `exp(${x - shift}) = ${got}, not 0`);
            else assert(Math.abs(got - e) <= 2 * 2 ** -52 * e, `exp(${x - shift}) ${got} vs ${e}`);
          });
          assert(S[r * T + row.length] === 1234.5, "wrote past the row's count");
          const tol = 1e-15 * Math.max(1, want);
          const ok = Number.isNaN(want) ? Number.isNaN(SUM[r]) : Math.abs(SUM[r] - want) <= tol;
          assert(ok, `row ${r}: sum ${SUM[r]} vs ${want}`);
        });
      },
    ),
    { numRuns: 200 },
  );
}

for (const fma of [true, false]) {
  const K = instantiateSimdKernels(fma);
  const tag = fma ? "relaxed_madd" : "mul+add";
  Deno.test(`cvt16 decodes all 65536 float16 bit patterns as Float16Array does [${tag}]`, () =>
    cvt16Spec(K));
  Deno.test(`scores and pv match float64 loops on random shapes [${tag}]`, () => kernelsSpec(K));
  Deno.test(
    `pexp: within 2 ulp of Math.exp, row sums; x < −708 (and −∞) → 0; NaN stays NaN [${tag}]`,
    () => pexpSpec(K),
  );
}

Deno.test("the plain-JS executor (no WebAssembly) agrees with the wasm one", async () => {
  const be = cpu();
  const cases = [
    {
      B: 2,
      Hq: 8,
      Hkv: 2,
      Sq: 1,
      N: 300,
      D: 128,
      dtype: "float16",
      causal: false,
      kvLens: [300, 77],
    },
    { B: 1, Hq: 6, Hkv: 3, Sq: 70, N: 150, D: 20, dtype: "float32", causal: true, kvLens: [150] },
    { B: 2, Hq: 4, Hkv: 4, Sq: 3, N: 65, D: 64, dtype: "float32", causal: false, kvLens: [65, 0] },
  ] as const;
  for (const [ci, c] of cases.entries()) {
    const q = randn([c.B, c.Hq, c.Sq, c.D], { seed: 10 * ci + 1, dtype: c.dtype, backend: be });
    const k = randn([c.B, c.Hkv, c.N, c.D], { seed: 10 * ci + 2, dtype: c.dtype, backend: be });
    const v = randn([c.B, c.Hkv, c.N, c.D], { seed: 10 * ci + 3, dtype: c.dtype, backend: be });
    const opts = { returnLse: true as const, causal: c.causal, kvLens: [...c.kvLens] };
    const run = async () => {
      const rs = [
        flashAttention(q, k, v, opts),
        flashAttention(q, k, v, { ...opts, numSplits: 3 }),
        leanAttention(q, k, v, { ...opts, grid: 5, tileSize: 16 }),
      ];
      const got: Float32Array[] = [];
      for (const r of rs) {
        got.push(await r.out.data(), await r.lse.data());
        r.out.dispose();
        r.lse.dispose();
      }
      return got;
    };
    const wasm = await run();
    disableSimdKernelsForTesting(true);
    let plain: Float32Array[];
    try {
      plain = await run();
    } finally {
      disableSimdKernelsForTesting(false);
    }
    // Both paths compute in float64 in different orders: after rounding to the storage dtype
    // they may differ by one unit in the last place.
    const ulp = c.dtype === "float16" ? 2 ** -10 : 2 ** -23;
    for (let i = 0; i < wasm.length; i++) {
      const scale = Math.max(1, ...Array.from(wasm[i]).filter(Number.isFinite).map(Math.abs));
      for (let j = 0; j < wasm[i].length; j++) {
        const [a, b] = [wasm[i][j], plain[i][j]];
        const same = Object.is(a, b) || Math.abs(a - b) <= ulp * scale;
        assert(same, `case ${ci} output ${i}[${j}]: wasm ${a} vs plain ${b}`);
      }
    }
    q.dispose();
    k.dispose();
    v.dispose();
  }
});
