/**
 * The CPU attention executor's WebAssembly kernels (backends/cpu/_attention_simd.ts) against
 * plain float64 loops: float16 conversion over every bit pattern, and the float32 scores / P·V
 * kernels on random shapes (row pairing, key tails, per-row key counts, padding widths) within
 * float32 rounding bounds.
 */
import { ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  disableSimdKernelsForTesting,
  instantiateSimdKernels,
  PEXP_LOW,
  probShift,
  type SimdKernels,
} from "../backends/cpu/_attention_simd.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { randn } from "../tensor/creation.ts";
import { E4M3_VALUES } from "../tensor/float8.ts";
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
      fc.boolean(), // equal key counts (the four-row and paired-row paths)
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
          take(R * Dp * 4),
          take(n * Dp * 4),
          take(n * Dp * 4),
          take(R * T * 4),
          take(R * Dp * 8),
          take(R * 8),
          take(R * 4),
        ];
        if (K.memory.buffer.byteLength < at) {
          K.memory.grow(Math.ceil((at - K.memory.buffer.byteLength) / 65536));
        }
        const m = K.memory.buffer;
        const Q = fill(new Float32Array(m, q, R * Dp), rnd);
        const Kt = fill(new Float32Array(m, k, n * Dp), rnd);
        const V = fill(new Float32Array(m, v, n * Dp), rnd);
        const O = fill(new Float64Array(m, o, R * Dp), rnd);
        const O0 = O.slice();
        const A = fill(new Float64Array(m, al, R), () => 0.5 + rnd());
        const C = fill(
          new Int32Array(m, cn, R),
          () => equal ? n : Math.floor((rnd() + 0.5) * (n + 1)),
        );
        // float32 sums: Dp/4 terms a lane, then two levels of lane sums
        const u = 2 ** -24;
        K.scores(q, k, s, R, n, Dp, T);
        const S = new Float32Array(m, s, R * T);
        for (let r = 0; r < R; r++) {
          for (let j = 0; j < n; j++) {
            let want = 0, mag = 0;
            for (let d = 0; d < Dp; d++) {
              want += Q[r * Dp + d] * Kt[j * Dp + d];
              mag += Math.abs(Q[r * Dp + d] * Kt[j * Dp + d]);
            }
            const got = S[r * T + j];
            const tol = 2 * (Dp / 4 + 3) * u * mag;
            assert(Math.abs(got - want) <= tol, `s[${r},${j}] ${got} vs ${want}`);
          }
        }
        K.pv(s, v, o, al, cn, R, Dp, T);
        // p comes from pexp scaled by 2^-shift: pv scales the tile's sums back
        const gain = 2 ** probShift(T);
        for (let r = 0; r < R; r++) {
          for (let d = 0; d < Dp; d++) {
            let want = O0[r * Dp + d] * A[r], mag = Math.abs(want);
            for (let j = 0; j < C[r]; j++) {
              want += S[r * T + j] * V[j * Dp + d] * gain;
              mag += Math.abs(S[r * T + j] * V[j * Dp + d] * gain);
            }
            const got = O[r * Dp + d];
            const tol = 2 * (C[r] + 2) * u * mag;
            assert(Math.abs(got - want) <= tol, `o[${r},${d}] ${got} vs ${want}`);
          }
        }
      },
    ),
    { numRuns: 300 },
  );
}

/**
 * smax against a plain loop: each row's largest score among its first `cnt[r]`, NaN where any
 * of those is NaN, −∞ for a row with none; scores past the count (NaN, +∞ here) are ignored.
 */
function smaxSpec(K: SimdKernels): void {
  const pick = [NaN, Infinity, -Infinity, 0, -0, 1e38, -1e38, 1e-45];
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }), // R
      fc.integer({ min: 1, max: 40 }), // T
      fc.integer({ min: 0, max: 2 ** 31 - 1 }), // seed
      fc.constantFrom(0, 0.02, 0.3), // share of special values
      (R, T, seed, special) => {
        let st = seed | 0;
        const rnd = () => ((st = (Math.imul(st, 1103515245) + 12345) | 0) >>> 0) / 2 ** 32;
        const s = 0, cnt = R * T * 4 + 16, mx = cnt + R * 4;
        if (K.memory.buffer.byteLength < mx + R * 4) K.memory.grow(1);
        const S = new Float32Array(K.memory.buffer, s, R * T + 4);
        const C = fill(new Int32Array(K.memory.buffer, cnt, R), () => Math.floor(rnd() * (T + 1)));
        for (let r = 0; r < R; r++) {
          for (let j = 0; j < T; j++) {
            S[r * T + j] = j >= C[r]
              ? (rnd() < 0.5 ? NaN : Infinity) // past the count: must be left out
              : rnd() < special
              ? pick[Math.floor(rnd() * pick.length)]
              : (rnd() - 0.5) * 2 ** Math.floor(rnd() * 40 - 20);
          }
        }
        K.smax(s, R, T, cnt, mx);
        const got = new Float32Array(K.memory.buffer, mx, R);
        for (let r = 0; r < R; r++) {
          let want = -Infinity;
          for (let j = 0; j < C[r]; j++) {
            const x = S[r * T + j];
            if (Number.isNaN(x) || Number.isNaN(want)) want = NaN;
            else if (x > want) want = x;
          }
          // −0 and +0 tie: either is the max
          const ok = Number.isNaN(want) ? Number.isNaN(got[r]) : got[r] === want;
          assert(ok, `seed ${seed}: row ${r} of ${R}, count ${C[r]}: ${got[r]} vs ${want}`);
        }
      },
    ),
    { numRuns: 300 },
  );
}

/** Largest pexp error seen, in float32 ulps of the exact exp (reported, not asserted). */
let pexpWorst = 0;

function pexpSpec(K: SimdKernels): void {
  const specials = [0, -0, -1e-30, -1e-10, -0.3465, -0.3466, -1, -80, -86.9, -87, -87.1];
  const extra = [-100, -1e6, -Infinity];
  const u = 2 ** -24;
  fc.assert(
    fc.property(
      fc.array(fc.double({ min: -100, max: 0, noNaN: true }), { minLength: 0, maxLength: 40 }),
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
        const need = R * T * 4 + 64;
        if (K.memory.buffer.byteLength < need) {
          K.memory.grow(Math.ceil((need - K.memory.buffer.byteLength) / 65536));
        }
        const m = K.memory.buffer;
        const S = new Float32Array(m, 0, R * T).fill(1234.5);
        const at = Math.ceil((R * T * 4) / 16) * 16;
        const C = new Int32Array(m, at, R);
        const MX = new Float32Array(m, at + 16, R);
        const SUM = new Float32Array(m, at + 32, R);
        rows.forEach((row, r) => {
          S.set(row, r * T);
          C[r] = row.length;
          MX[r] = shift;
        });
        const inputs = S.slice();
        K.pexp(0, R, T, at, at + 16, at + 32);
        // p is stored times 2^-shift (exact but where that is subnormal), the sums not
        const gain = 2 ** probShift(T);
        const sub = 2 ** -149 * gain;
        rows.forEach((row, r) => {
          let want = 0;
          row.forEach((_, j) => {
            // the kernel's argument: float32 score − float32 max, rounded to float32
            const x = Math.fround(inputs[r * T + j] - MX[r]);
            const e = Math.exp(x);
            const got = S[r * T + j] * gain;
            if (Number.isNaN(e)) assert(Number.isNaN(got), `exp(${x}) = ${got}`);
            else if (x < PEXP_LOW) assert(got === 0, `exp(${x}) = ${got}, not 0`);
            else {
              const err = Math.max(0, Math.abs(got - e) - sub) / (u * e);
              pexpWorst = Math.max(pexpWorst, err);
              assert(err <= 3, `exp(${x}) ${got} vs ${e}: ${err.toFixed(2)} ulp`);
              want += e;
            }
          });
          assert(S[r * T + row.length] === 1234.5, "wrote past the row's count");
          // float32 lane sums: about n/4 additions a lane, then two levels
          const tol = (row.length / 4 + 6) * u * Math.max(1e-30, want);
          const ok = Number.isNaN(want) || row.some(Number.isNaN)
            ? Number.isNaN(SUM[r])
            : Math.abs(SUM[r] - want) <= tol + row.length * sub;
          assert(ok, `row ${r}: sum ${SUM[r]} vs ${want}`);
        });
      },
    ),
    { numRuns: 200 },
  );
}

/**
 * dq8 / dqe4m3 on random rows of codes (D a multiple of 16, rows Dp ≥ D apart, random float32
 * scales of any size, zero and negative included) against `scale · value` rounded to float32
 * once, as `la.dequantize` computes it (E4M3's value from its table): the same bits (a NaN
 * code the quiet NaN a JavaScript store writes), and the row padding untouched.
 */
function dq8Spec(K: SimdKernels, e4m3: boolean): void {
  const valueOf = (c: number) => e4m3 ? E4M3_VALUES[c] : (c << 24) >> 24;
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 9 }), // rows
      fc.constantFrom(16, 32, 48, 128), // D
      fc.integer({ min: 0, max: 2 }), // extra padding, in 16s
      fc.integer({ min: 0, max: 2 ** 31 - 1 }), // seed
      (n, D, pad, seed) => {
        const Dp = D + 16 * pad;
        let st = seed | 0;
        const rnd = () => ((st = (Math.imul(st, 1103515245) + 12345) | 0) >>> 0) / 2 ** 32;
        const src = 0, sc = n * D, dst = sc + n * 4 + 16;
        const need = dst + n * Dp * 4;
        if (K.memory.buffer.byteLength < need) {
          K.memory.grow(Math.ceil((need - K.memory.buffer.byteLength) / 65536));
        }
        const q8 = new Uint8Array(K.memory.buffer, src, n * D);
        for (let i = 0; i < q8.length; i++) q8[i] = Math.floor(rnd() * 256);
        const scales = fill(new Float32Array(K.memory.buffer, sc, n), () => {
          const x = rnd();
          return x < 0.1 ? 0 : (rnd() < 0.5 ? -1 : 1) * 2 ** (rnd() * 260 - 140);
        });
        const out = new Float32Array(K.memory.buffer, dst, n * Dp).fill(1234.5);
        (e4m3 ? K.dqe4m3 : K.dq8)(src, sc, dst, n, D, Dp);
        const f32 = new Float32Array(1);
        for (let i = 0; i < n; i++) {
          for (let d = 0; d < Dp; d++) {
            f32[0] = d < D ? scales[i] * valueOf(q8[i * D + d]) : 1234.5;
            const want = new Uint32Array(f32.buffer)[0];
            const got = new Uint32Array(out.buffer, out.byteOffset + 4 * (i * Dp + d), 1)[0];
            const code = q8[i * D + d];
            assert(got === want, `seed ${seed}: row ${i}, d ${d}, code ${code}: ${got} vs ${want}`);
          }
        }
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
  Deno.test(`smax: each row's largest score of its count, NaN if any is NaN [${tag}]`, () =>
    smaxSpec(K));
  Deno.test(`dq8 stages int8 rows as scale · value rounded once [${tag}]`, () => dq8Spec(K, false));
  Deno.test(`dqe4m3 stages E4M3 rows as scale · value rounded once [${tag}]`, () =>
    dq8Spec(K, true));
  Deno.test(
    `pexp: float32 within 3 ulp of exp, row sums; x < −87 (and −∞) → 0; NaN stays NaN [${tag}]`,
    () => {
      pexpSpec(K);
      console.log(`largest pexp error: ${pexpWorst.toFixed(2)} ulp`);
    },
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
    // The plain loop computes in float64, the wasm kernels in float32 (the GPU backend's
    // contract): float16 outputs may differ by one unit in the last place, float32 outputs by
    // the float32 rounding of D-term dot products and tile sums (measured ≤ 2 units of 2^-23
    // of max(1, max|x|) on these cases; 16 allowed).
    const ulp = c.dtype === "float16" ? 2 ** -10 : 16 * 2 ** -23;
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
