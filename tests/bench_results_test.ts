/**
 * Tests of the benchmark's results and checks: the results-file shape, the plot from a
 * fixture, the file names, and the float64 reference rows of the check (periodic K/V, K/V in
 * parts).
 */
import fc from "npm:fast-check@4.10.2";
import { median } from "../bench/_ceiling.ts";
import { type Results, type Row, validateResults } from "../bench/_results.ts";
import { renderPlot, speedups } from "../bench/plot.ts";
import { deviceSlug } from "../bench/_report.ts";
import { referenceRow, sampleHeads } from "../bench/_reference.ts";
import { referenceAttention } from "../testing/reference.ts";
import { normals } from "../tensor/random.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./_bench.ts";

function fixture(): Results {
  const rows: Row[] = [];
  const base = { dtype: "float16" as const, D: 128, Hq: 32 };
  for (const [B, Hkv] of [[1, 32], [4, 8]]) {
    for (const N of [1024, 4096, 65536]) {
      const lean = 0.01 * N / 1024;
      for (const [algo, f] of [["lean", 1], ["flash", 2], ["ort-webgpu", 3]] as const) {
        rows.push({
          algo,
          ...base,
          B,
          Hkv,
          N,
          gpuMs: lean * f,
          wallMs: lean * f + 0.01,
          effGBs: 1,
        });
      }
    }
  }
  rows.push({
    algo: "lean",
    ...base,
    B: 4,
    Hkv: 8,
    N: 131072,
    kvLens: [512, 2048, 131072, 1024],
    gpuMs: 1,
    wallMs: 1,
    effGBs: 1,
  });
  rows.push({
    algo: "flash",
    ...base,
    B: 4,
    Hkv: 8,
    N: 131072,
    kvLens: [512, 2048, 131072, 1024],
    gpuMs: 5,
    wallMs: 5,
    effGBs: 1,
  });
  rows.push({
    algo: "torch-flash",
    ...base,
    B: 1,
    Hkv: 32,
    N: 1024,
    gpuMs: null,
    wallMs: null,
    effGBs: null,
    absent: "no torch",
  });
  rows.push({
    algo: "naive",
    ...base,
    B: 1,
    Hkv: 32,
    N: 1 << 20,
    gpuMs: null,
    wallMs: null,
    effGBs: null,
    skipped: "too big",
  });
  return {
    device: "Fixture GPU <1>",
    date: "2026-11-25T00:00:00Z",
    deno: "2.9.6",
    ceilingGBs: 3000,
    rows,
  };
}

Deno.test("plot: speed-ups from a fixture, one line per config, one panel per comparison", () => {
  const res = validateResults(JSON.parse(JSON.stringify(fixture())));
  const flash = speedups(res.rows, "flash");
  assertEquals([...flash.keys()].sort(), ["B1 Hq32 Hkv32 D128 f16", "B4 Hq32 Hkv8 D128 f16"]);
  const b4 = flash.get("B4 Hq32 Hkv8 D128 f16")!;
  assertEquals(b4.map((p) => p.N), [1024, 4096, 65536, 131072]);
  assert(b4.slice(0, 3).every((p) => Math.abs(p.speedup - 2) < 1e-12 && !p.ragged));
  assertEquals(b4[3], { N: 131072, speedup: 5, ragged: true });
  assertEquals(speedups(res.rows, "torch-flash").size, 0);
  const svg = renderPlot(res);
  assertMatch(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert(svg.trimEnd().endsWith("</svg>"));
  assertEquals((svg.match(/<polyline /g) ?? []).length, 4); // 2 configs × (flash, ort-webgpu)
  assertMatch(svg, /lean vs flash</);
  assertMatch(svg, /lean vs ort-webgpu</);
  assert(!svg.includes("lean vs torch-flash"));
  assert(svg.includes("Fixture GPU &lt;1&gt;"), "text is escaped");
  // Balanced tags: every opened element is closed or self-closed.
  const opens = (svg.match(/<(g|svg|polyline|circle|path|text)(\s[^>]*)?>/g) ?? [])
    .filter((t) => !t.endsWith("/>")).length;
  const closes = (svg.match(/<\/(g|svg|polyline|circle|path|text)>/g) ?? []).length;
  assertEquals(opens, closes);
});

Deno.test("validateResults: rejects files missing what the plot needs", () => {
  assertThrows(() => validateResults({}), Error, "device");
  const f = fixture() as unknown as Record<string, unknown>;
  assertThrows(() => validateResults({ ...f, ceilingGBs: "fast" }), Error, "ceilingGBs");
  assertThrows(
    () => validateResults({ ...f, rows: [{ ...fixture().rows[0], gpuMs: "1" }] }),
    Error,
    "gpuMs",
  );
});

Deno.test("referenceRow: periodic K/V rows match the float64 reference (GQA, ragged)", () => {
  const c = {
    dtype: "float32" as const,
    D: 8,
    B: 3,
    Hq: 6,
    Hkv: 2,
    N: 50,
    kvLens: [50, 7, 0],
    ragged: "t",
  };
  const P = 8 * 13; // a period of 13 key rows: K repeats along and across heads
  const kBase = Float32Array.from(normals(P, 11));
  const vBase = Float32Array.from(normals(P, 12));
  const q = Float32Array.from(normals(c.B * c.Hq * c.D, 13));
  const n = c.B * c.Hkv * c.N * c.D;
  const k = Float32Array.from({ length: n }, (_, i) => kBase[i % P]);
  const v = Float32Array.from({ length: n }, (_, i) => vBase[i % P]);
  const ref = referenceAttention({ q, k, v, ...c, Sq: 1 });
  for (let b = 0; b < c.B; b++) {
    for (let h = 0; h < c.Hq; h++) {
      const row = referenceRow(c, b, h, q, kBase, vBase);
      for (let d = 0; d < c.D; d++) {
        const want = ref.out[(b * c.Hq + h) * c.D + d];
        assert(Math.abs(row[d] - want) <= 1e-12, `b${b} h${h} d${d}: ${row[d]} vs ${want}`);
      }
    }
  }
  assertEquals(sampleHeads(c), [[0, 0], [0, 5]]);
  assertEquals(sampleHeads({ ...c, kvLens: undefined }), [[0, 0], [2, 5]]);
});

Deno.test("referenceRow: K/V split in parts, each tiled from the block's start", () => {
  const c = { dtype: "float32" as const, D: 4, B: 2, Hq: 4, Hkv: 2, N: 37 };
  const P = 4 * 7;
  const kBase = Float32Array.from(normals(P, 21));
  const vBase = Float32Array.from(normals(P, 22));
  const q = Float32Array.from(normals(c.B * c.Hq * c.D, 23));
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 1, max: c.N - 1 }), { maxLength: 4 }),
      fc.array(fc.integer({ min: 0, max: c.N }), { minLength: c.B, maxLength: c.B }),
      (cutsRaw, kvLens) => {
        const cuts = [0, ...cutsRaw.sort((a, b) => a - b), c.N];
        const ranges = cuts.slice(1).map((n1, i) => [cuts[i], n1] as [number, number]);
        // The logical [B, Hkv, N, D] arrays the parts hold.
        const n = c.B * c.Hkv * c.N * c.D;
        const k = new Float32Array(n), v = new Float32Array(n);
        for (let o = 0; o < c.B * c.Hkv; o++) {
          for (const [n0, n1] of ranges) {
            for (let j = n0; j < n1; j++) {
              for (let d = 0; d < c.D; d++) {
                const src = ((o * (n1 - n0) + j - n0) * c.D + d) % P;
                k[(o * c.N + j) * c.D + d] = kBase[src];
                v[(o * c.N + j) * c.D + d] = vBase[src];
              }
            }
          }
        }
        const cc = { ...c, kvLens };
        const ref = referenceAttention({ q, k, v, ...cc, Sq: 1 });
        for (let b = 0; b < c.B; b++) {
          for (let h = 0; h < c.Hq; h++) {
            const row = referenceRow(cc, b, h, q, kBase, vBase, ranges);
            for (let d = 0; d < c.D; d++) {
              const want = ref.out[(b * c.Hq + h) * c.D + d];
              assert(Math.abs(row[d] - want) <= 1e-12, `b${b} h${h} d${d}: ${row[d]} vs ${want}`);
            }
          }
        }
      },
    ),
    { numRuns: 40 },
  );
});

Deno.test("deviceSlug and median", () => {
  assertEquals(deviceSlug("NVIDIA H100 80GB HBM3 (Vulkan)"), "nvidia-h100-80gb-hbm3");
  assertEquals(deviceSlug("(???)"), "gpu");
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 2, 3]), 2.5);
});
