/**
 * How often does where K/V lie make a grid slow? Session (22)'s `kv_placement.ts` showed that
 * lean's default grid 256 at (1,32,32) 64k took 393–396 µs over one pair of K/V buffers and 361
 * over another, the same values in both (grid 264: 365 over both). This allocates P buffers for K
 * and P for V (with pad buffers of assorted sizes between them, so the driver places them at
 * assorted offsets), fills them with the same tiled values, and times grids over every (K_i, V_j)
 * pair: the spread per grid says whether a user's K/V can land where a grid is slow, and how often.
 *
 *     deno run -A --lock=deno.lock bench/probes/kv_pairs.ts ["B,Hq,Hkv,N;…"] [grids] [P]
 *
 * `grids`: comma-separated, 0 for the default grid (default "0,240,264"); P default 4. On a device
 * host: `run` carrying .gpu, `source .gpu/setup.sh && deno run … > $OUT/pairs.txt`.
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention, leanAttentionPlan } from "../../attention/lean.ts";
import { type Call, decodeInputs, gpuTimesInterleaved } from "../_timing.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { median } from "../_ceiling.ts";
import type { Tensor } from "../../tensor/tensor.ts";

const shapes = (Deno.args[0] ?? "1,32,32,65536").split(";").map((s) => s.split(",").map(Number));
const grids = (Deno.args[1] ?? "0,240,264").split(",").map(Number);
const P = Number(Deno.args[2] ?? 4);
const D = 128;
const gpu = await webgpu();
console.log(`adapter: ${gpu.description}`);

for (const [B, Hq, Hkv, N] of shapes) {
  const shape = [B, Hkv, N, D];
  const base = decodeInputs(gpu, [B, Hq, Hkv, N], D);
  const q = base.q;
  if (gpu.storageParts({ id: base.k.id, shape, dtype: "float16" })) {
    throw new Error(`kv_pairs: K/V of [${shape}] are stored in parts; take a smaller shape`);
  }
  // Alternating K, pad, V, pad allocations; pads of 1–15 MB move the next buffer's offset.
  const ks: Tensor[] = [], vs: Tensor[] = [], pads: Tensor[] = [];
  const pad = (i: number) => pads.push(allocStorage(gpu, [(2 * i + 1) << 19], "float16"));
  for (let i = 0; i < P; i++) {
    ks.push(allocStorage(gpu, shape, "float16"));
    pad(2 * i);
    vs.push(allocStorage(gpu, shape, "float16"));
    pad(2 * i + 1);
  }
  for (const t of ks) tileInto(gpu, base.k, t);
  for (const t of vs) tileInto(gpu, base.v, t);
  const def = leanAttentionPlan(q, ks[0], vs[0]).schedule.plan.grid;
  const names = grids.map((g) => (g ? `g${g}` : `def(${def})`));
  const rows: number[][] = [];
  console.log(`${B},${Hq},${Hkv},${N}: µs over (K_i, V_j), ${names.join(" | ")}`);
  for (let i = 0; i < P; i++) {
    for (let j = 0; j < P; j++) {
      const calls: Call[] = grids.map((grid) => (qq = q) =>
        leanAttention(qq, ks[i], vs[j], grid ? { grid } : {})
      );
      const t = await gpuTimesInterleaved(gpu, calls, 20, 3);
      const us = t.map((x) => (x ? x.ms * 1e3 : NaN));
      rows.push(us);
      console.log(`  K${i} V${j}: ${us.map((x) => x.toFixed(1)).join(" | ")}`);
    }
  }
  for (const [c, name] of names.entries()) {
    const col = rows.map((r) => r[c]);
    const lo = Math.min(...col);
    const slow = col.filter((x) => x > 1.04 * lo).length;
    console.log(
      `  ${name.padEnd(9)} min ${lo.toFixed(1)} median ${median(col).toFixed(1)} max ${
        Math.max(...col).toFixed(1)
      }; ${slow} of ${col.length} pairs > 1.04× its min`,
    );
  }
  for (const t of [q, base.k, base.v, ...ks, ...vs, ...pads]) t.dispose();
}
