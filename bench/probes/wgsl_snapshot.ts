// Proves a refactor of the WebGPU attention kernels left their WGSL byte for byte unchanged:
// prints one sha-256 per generated kernel over a broad set of configurations, then a total.
// Run `deno run bench/probes/wgsl_snapshot.ts > after.txt` before and after; `diff` the files.
import { genericKey, genericWgsl } from "../../backends/webgpu/attention/generic_kernel.ts";
import { mergeKey, mergeWgsl } from "../../backends/webgpu/attention/merge_states_kernel.ts";
import { reduceKey, reduceWgsl } from "../../backends/webgpu/attention/reduce_kernel.ts";
import type { KernelVariant } from "../../backends/webgpu/attention/_wgsl_variant.ts";
import { type SgConfig, sgKey } from "../../backends/webgpu/attention/subgroup_config.ts";
import { sgWgsl } from "../../backends/webgpu/attention/subgroup_kernel.ts";
import { SG_FIXED } from "../../tests/_sg_fixed.ts";
import {
  wgmKey,
  wgmTile,
  wgmWgsl,
} from "../../backends/webgpu/attention/workgroup_memory_kernel.ts";

type Elem = "f32" | "f16";
const ELEMS: readonly Elem[] = ["f32", "f16"];
const PAIRS: readonly [Elem, Elem][] = ELEMS.flatMap((kv) =>
  ELEMS.map((q): [Elem, Elem] => [kv, q])
);

const lines: string[] = [];
const all: string[] = [];

async function record(name: string, key: string, wgsl: () => string): Promise<void> {
  let text: string;
  try {
    text = wgsl();
  } catch (e) {
    text = `throws: ${e}`;
  }
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  all.push(hex);
  lines.push(`${name} ${key} ${hex}`);
}

// Subgroup kernel: every (D, R, storage, lanes) the chooser can give, times the knobs that
// change the text (each on its own, and a few together as the defaults combine them).
const sgVariants: Partial<SgConfig>[] = [
  {},
  { U: 1 },
  { U: 2, bf: false },
  { U: 4 },
  { pf: true },
  { rot: true },
  { rot: true, U: 2, lz: true },
  { bf: false },
  { tm: true },
  { tm: true, rot: true },
  { lz: true },
  { fm: true },
  { fm: true, pf: true, lz: true },
  { G: 2 },
  { G: 2, tm: true, lz: true },
  { nsMax: 4 },
  { wg: 128 },
  { tile: -1 },
  { tile: -1, tm: true, fm: true },
];
for (const D of [32, 64, 96, 128, 256]) {
  for (const R of [1, 2, 4, 8]) {
    for (const [kv, q] of PAIRS) {
      for (const L of [4, 8, 16, 32]) {
        if (D % (4 * L) !== 0 || (R * D) / L > 64) continue;
        for (const v of sgVariants) {
          const c: SgConfig = { ...SG_FIXED, D, R, kv, q, L, ...v };
          if (c.tile === -1) c.tile = 2 * (c.wg / c.L / c.G) * c.U;
          if (c.bf && (c.U * c.R & (c.U * c.R - 1)) !== 0) c.bf = false;
          await record("sg", sgKey(c), () => sgWgsl(c));
        }
      }
    }
  }
}

for (const D of [1, 3, 16, 32, 64, 96, 128, 256]) {
  for (const [kv, q] of PAIRS) {
    for (const C of [1, 8, 32]) {
      const c = { D, kv, q, C };
      await record("generic", genericKey(c), () => genericWgsl(c));
    }
  }
}

for (const D of [1, 16, 32, 64, 96, 128, 256]) {
  for (const q of ELEMS) await record("reduce", `D${D}:q${q}`, () => reduceWgsl(D, q));
}

for (const n of [1, 2, 5]) {
  for (const hasAcc of [false, true]) {
    for (const final of [false, true]) {
      for (const out of ELEMS) {
        for (const first of ELEMS) {
          const ins: Elem[] = Array.from({ length: n }, (_, i) => i === 0 ? first : "f32");
          const c = { ins, hasAcc, final, out };
          await record("merge", mergeKey(c), () => mergeWgsl(c));
        }
      }
    }
  }
}

for (const D of [16, 32, 64, 128, 256]) {
  for (const R of [1, 2, 4, 8, 16, 32]) {
    const KT = wgmTile(D, R);
    await record("wgmTile", `D${D}:R${R}`, () => String(KT));
    if (KT === null) continue;
    for (const [kv, q] of PAIRS) {
      for (const grMax of [1, 2, (256 * 4) / D]) {
        const c = { D, R, kv, q, KT, grMax };
        await record("wgm", wgmKey(c), () => wgmWgsl(c));
      }
    }
  }
}

const total = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(all.join("\n")));
lines.push(
  `total ${all.length} ${
    [...new Uint8Array(total)].map((b) => b.toString(16).padStart(2, "0")).join("")
  }`,
);
// Variant kernels (#15): printed after the plain total, so the plain lines and their total
// stay comparable with snapshots taken before variants existed.
const plainCount = all.length;
const VARIANTS: KernelVariant[] = [
  { wl: true, wr: false, cap: false, sinks: false, alibi: false, bias: null, bk: false },
  { wl: false, wr: true, cap: true, sinks: false, alibi: false, bias: null, bk: false },
  { wl: false, wr: false, cap: false, sinks: true, alibi: true, bias: null, bk: false },
  { wl: true, wr: true, cap: true, sinks: true, alibi: true, bias: "f16", bk: true },
  { wl: false, wr: false, cap: false, sinks: false, alibi: false, bias: "f32", bk: false },
];
const sgBase: SgConfig = { ...SG_FIXED, D: 64, R: 1, kv: "f16", q: "f16", L: 8, U: 4 };
for (const v of VARIANTS) {
  for (
    const k of [{}, { R: 4, rot: true, lz: true }, { tm: true, fm: true }, { bf: false, pf: true }]
  ) {
    const c: SgConfig = { ...sgBase, ...k, v };
    await record("sg+v", sgKey(c), () => sgWgsl(c));
  }
  for (const R of [1, 4]) {
    const c = { D: 64, R, kv: "f32" as Elem, q: "f16" as Elem, KT: wgmTile(64, R)!, grMax: 2, v };
    await record("wgm+v", wgmKey(c), () => wgmWgsl(c));
  }
  const g = { D: 16, kv: "f16" as Elem, q: "f32" as Elem, C: 8, v };
  await record("generic+v", genericKey(g), () => genericWgsl(g));
}
for (const q of ELEMS) {
  await record("reduce+sinks", reduceKey(64, q, true), () => reduceWgsl(64, q, true));
}
const vTotal = await crypto.subtle.digest(
  "SHA-256",
  new TextEncoder().encode(all.slice(plainCount).join("\n")),
);
lines.push(
  `total-variants ${all.length - plainCount} ${
    [...new Uint8Array(vTotal)].map((b) => b.toString(16).padStart(2, "0")).join("")
  }`,
);
// Paged, quantized and deferred-merge subgroup kernels (#16, #17, #20): their own total, so
// the lines above stay comparable with older snapshots.
const extraFrom = all.length;
const PAGED = [null, { ps: 16, nb: 1, ppb: 0 }, { ps: 3, nb: 3, ppb: 7 }];
const QUANT = [null, { fmt: "i8", sc: "token" }, { fmt: "i8", sc: "head" }, {
  fmt: "e4m3",
  sc: "token",
}] as const;
for (const pg of PAGED) {
  for (const qk of QUANT) {
    for (const [D, R, L] of [[128, 1, 8], [128, 4, 16], [64, 4, 8], [32, 1, 8]]) {
      for (const k of [{}, { pf: true, lz: true, fm: true }, { rot: true, fm: true, dm: true }]) {
        const c: SgConfig = { ...SG_FIXED, D, R, L, U: 2, kv: qk ? "f32" : "f16", q: "f16", ...k };
        if (pg) c.pg = pg;
        if (qk) c.qk = qk;
        await record("sg+pq", sgKey(c), () => sgWgsl(c));
      }
    }
  }
}
const xTotal = await crypto.subtle.digest(
  "SHA-256",
  new TextEncoder().encode(all.slice(extraFrom).join("\n")),
);
lines.push(
  `total-paged-quant ${all.length - extraFrom} ${
    [...new Uint8Array(xTotal)].map((b) => b.toString(16).padStart(2, "0")).join("")
  }`,
);
console.log(lines.join("\n"));
