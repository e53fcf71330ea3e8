/**
 * The open performance issues' goals read off a bench JSON (`deno task bench --dtype f16 --d 128
 * --algos lean,lean-invariant,lean-int8,lean-float8e4m3,…,torch-cudnn`): issue #20 items 1 and 3,
 * issue #17's quantized rows; on a CPU bench's JSON (`--cpu`), item 4's lean against ORT native.
 * Prints one block a file:
 *
 *   deno run --allow-read bench/goals.ts bench/results/nvidia-h100-2026-12-07-f16-d128.json
 *
 * A ratio "× cuDNN" is cuDNN's GPU time over lean's (above 1: lean is faster); "uniform" rows are
 * those without `kvLens` (the ragged rows give cuDNN a padded mask). Rows an algorithm skipped
 * (K/V over one binding, out of budget) are left out of the figures that need it.
 *
 * @module
 */

/** The fields of a bench JSON row that the goals read. */
export interface Row {
  algo: string;
  B: number;
  Hq: number;
  Hkv: number;
  N: number;
  kvLens?: number[];
  gpuMs: number | null;
  wallMs?: number | null;
  fracCeiling?: number;
  quantErr?: number;
}

/** The fields of a bench JSON that the goals read. */
export interface BenchDoc {
  device: string;
  date: string;
  rows: Row[];
}

const shape = (r: Row) => `(${r.B},${r.Hq},${r.Hkv}) ${r.kvLens ? "ragged" : kib(r.N)}`;
const kib = (n: number) => n >= 1024 ? `${n / 1024}k` : `${n}`;
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const geomean = (xs: number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
const span = (xs: number[]) =>
  xs.length ? `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}` : "—";

/** The row of `algo` for the case of `r` (same shape and lengths), if it ran. */
function peer(rows: Row[], r: Row, algo: string, t: "gpuMs" | "wallMs" = "gpuMs"): Row | undefined {
  const same = (o: Row) =>
    o.algo === algo && o.B === r.B && o.Hq === r.Hq && o.Hkv === r.Hkv && o.N === r.N &&
    String(o.kvLens ?? "") === String(r.kvLens ?? "");
  const o = rows.find(same);
  return o && o[t] ? o : undefined;
}

/** Each row of `set` that `algo` ran too: the row, `algo`'s row and their time ratio algo / row. */
function ratios(rows: Row[], set: Row[], algo: string, t: "gpuMs" | "wallMs" = "gpuMs") {
  return set.flatMap((r) => {
    const o = peer(rows, r, algo, t);
    return o ? [{ r, o, x: o[t]! / r[t]! }] : [];
  });
}

/** #20 item 4: lean's wall time over ONNX Runtime native's on a CPU bench's rows. */
function cpuLines(rows: Row[]): string[] {
  const lean = rows.filter((r) => r.algo === "lean" && r.wallMs);
  const cells = ratios(rows, lean, "ort-cpu", "wallMs").map(({ r, o, x }) =>
    `${shape(r)} ${r.wallMs!.toFixed(2)} / ${o.wallMs!.toFixed(2)} = ${(1 / x).toFixed(2)}`
  );
  return cells.length ? [`#20.4 lean / ORT native, wall ms: ${cells.join(" | ")}`] : [];
}

/** A bench JSON's figures for the open issues' goals, one line each. */
export function goalLines(doc: BenchDoc): string[] {
  const out: string[] = [];
  const rows = doc.rows;
  const lean = rows.filter((r) => r.algo === "lean" && r.gpuMs);
  const uniform = lean.filter((r) => !r.kvLens);
  out.push(`${doc.device}, ${doc.date}`, ...cpuLines(rows));
  if (lean.length === 0) return out; // a CPU bench: no GPU times

  // #20 item 1: against cuDNN and the read ceiling.
  const vsCudnn = ratios(rows, uniform, "torch-cudnn");
  const big = vsCudnn.filter(({ r }) => r.N >= 65536);
  const slowBig = big.filter(({ x }) => x < 0.98).map(({ r, x }) => `${shape(r)} ${x.toFixed(3)}`);
  out.push(
    `#20.1 geomean × cuDNN, uniform rows: ${geomean(vsCudnn.map((v) => v.x)).toFixed(3)} ` +
      `(${vsCudnn.length} rows; ${span(vsCudnn.map((v) => v.x))})`,
  );
  out.push(
    `#20.1 N ≥ 64k rows ≥ 0.98× cuDNN: ${big.length - slowBig.length} of ${big.length}` +
      (slowBig.length ? `; below: ${slowBig.join(", ")}` : ""),
  );
  const long = lean.filter((r) => r.N >= 16384 && !r.kvLens);
  const low = long.filter((r) => r.fracCeiling! < 0.9);
  out.push(
    `#20.1 N ≥ 16k rows ≥ 90 % of ceiling: ${long.length - low.length} of ${long.length}` +
      (low.length
        ? `; below: ${low.map((r) => `${shape(r)} ${pct(r.fracCeiling!)}`).join(", ")}`
        : ""),
  );
  const gqa4k = lean.find((r) => r.B === 1 && r.Hq === 32 && r.Hkv === 8 && r.N === 4096);
  if (gqa4k) out.push(`#20.1 (1,32,8) 4k: ${pct(gqa4k.fracCeiling!)} of ceiling (goal 75 %)`);

  // The README's other goals: ORT Web, own flash, flash-decoding.
  const ort = ratios(rows, lean, "ort-webgpu").map((v) => v.x);
  if (ort.length) {
    out.push(`× ORT Web: geomean ${geomean(ort).toFixed(2)} (${ort.length} rows; ${span(ort)})`);
  }
  const flash = ratios(rows, lean, "flash");
  const b1 = flash.filter(({ r }) => r.B === 1 && r.N === 524288 && !r.kvLens);
  if (flash.length) {
    const mean = flash.reduce((a, v) => a + v.x, 0) / flash.length;
    out.push(
      `× own flash: mean ${mean.toFixed(2)} (${flash.length} rows); B = 1, 512k: ` +
        b1.map(({ r, x }) => `${shape(r)} ${x.toFixed(2)}`).join(", "),
    );
  }
  const fd = ratios(rows, lean, "flash-decoding");
  const ragged = fd.filter(({ r }) => r.kvLens).map((v) => v.x);
  const slow = fd.filter(({ x }) => x < 1 / 1.05).map(({ r, x }) => `${shape(r)} ${x.toFixed(2)}`);
  if (fd.length) {
    out.push(
      `× flash-decoding: ragged ${span(ragged)}; rows > 5 % slower: ${slow.length} of ` +
        `${fd.length}${slow.length ? ` (${slow.join(", ")})` : ""}`,
    );
  }

  // #20 item 3: batch-invariant cost over lean.
  const inv = ratios(rows, lean, "lean-invariant").map(({ r, x }) =>
    `${shape(r)} ${(100 * (x - 1)).toFixed(1)}`
  );
  out.push(`#20.3 lean-invariant over lean, %: ${inv.join(" | ")}`);

  // #17: quantized rows against float16 lean and cuDNN float16.
  for (const q of ["lean-int8", "lean-float8e4m3"]) {
    const qs = lean.filter((r) => !r.kvLens).flatMap((r) => {
      const o = peer(rows, r, q);
      const c = peer(rows, r, "torch-cudnn");
      if (!o) return [];
      const vsC = c ? `${(c.gpuMs! / o.gpuMs!).toFixed(2)}×` : "—";
      return [{
        r,
        line: `${shape(r)}: ${(o.gpuMs! / r.gpuMs!).toFixed(2)} of f16, ${pct(o.fracCeiling!)}` +
          ` ceil, ${vsC} cuDNN, err ${o.quantErr?.toExponential(1)}`,
      }];
    });
    out.push(`#17 ${q} (time / lean f16, fraction of ceiling, × cuDNN f16, max error):`);
    for (const { line } of qs) out.push(`  ${line}`);
  }
  return out;
}

if (import.meta.main) {
  if (Deno.args.length === 0) {
    console.error("usage: deno run --allow-read bench/goals.ts RESULT.json [...]");
    Deno.exit(2);
  }
  for (const p of Deno.args) {
    console.log([p, ...goalLines(JSON.parse(Deno.readTextFileSync(p)))].join("\n"));
  }
}
