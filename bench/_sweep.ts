/**
 * What the benchmark sweeps: command-line flags, the default grid of shapes and the cases
 * they expand to (the headline case first), the memory rules that skip a case (with the
 * reason) before anything is allocated, how K/V too large for one binding are split across
 * buffers, and the time a case is expected to take (so the sweep's budget is never overrun).
 * Pure data, no GPU: the smoke test drives it directly.
 *
 * @module
 */
import { partLayout } from "../backends/webgpu/internal.ts";
import { caseMemory, MEMORY_HEADROOM } from "./_memory.ts";

/** Algorithms of this library. */
export const OWN_ALGOS = ["lean", "flash", "flash-decoding", "naive"] as const;
/** Peer implementations measured side by side. */
export const PEER_ALGOS = [
  "ort-webgpu",
  "ort-cpu",
  "torch-cudnn",
  "torch-flash",
  "torch-efficient",
  "torch-ragged",
] as const;
/** Lean with one attention variant each (`_variants.ts`): asked for by name only. */
export const VARIANT_ALGOS = [
  "lean-window4096",
  "lean-softcap50",
  "lean-sinks",
  "lean-alibi",
  "lean-invariant",
] as const;
/** A variant row's algo. */
export type VariantAlgo = typeof VARIANT_ALGOS[number];
/** Lean over a paged KV cache of 16 or 256 tokens a page (`_paged.ts`): by name only. */
export const PAGED_ALGOS = ["lean-paged16", "lean-paged256"] as const;
/** Lean over K/V quantized to int8 or float8e4m3 (`_quant.ts`): by name only. */
export const QUANT_ALGOS = ["lean-int8", "lean-float8e4m3"] as const;
/** Every algorithm a row may carry. */
export const ALL_ALGOS = [
  ...OWN_ALGOS,
  ...PEER_ALGOS,
  ...VARIANT_ALGOS,
  ...PAGED_ALGOS,
  ...QUANT_ALGOS,
] as const;

/** An algorithm of this library. */
export type OwnAlgo = typeof OWN_ALGOS[number];
/** A peer implementation. */
export type PeerAlgo = typeof PEER_ALGOS[number];
/** Any algorithm. */
export type Algo = typeof ALL_ALGOS[number];
/** K/V storage dtype. */
export type BenchDType = "float16" | "float32";

/** One (batch, query heads, kv heads) configuration. */
export interface HeadConfig {
  B: number;
  Hq: number;
  Hkv: number;
}

/** One shape the sweep measures. `kvLens` set means a ragged batch padded to `N`. */
export interface Case {
  dtype: BenchDType;
  D: number;
  B: number;
  Hq: number;
  Hkv: number;
  /** Key positions stored per (batch, kv head): the padded length for ragged batches. */
  N: number;
  /** Valid keys per batch entry (ragged batches only). */
  kvLens?: number[];
  /** Name of the ragged list (`ragged-a`, `ragged-b`). */
  ragged?: string;
}

/** Parsed flags. */
export interface BenchOptions {
  quick: boolean;
  smoke: boolean;
  cpu: boolean;
  peers: boolean;
  dtypes: BenchDType[];
  ds: number[];
  ns: number[];
  configs: HeadConfig[];
  /** Ragged lists to run, each with its head configs. */
  ragged: { name: string; lens: number[]; heads: { Hq: number; Hkv: number }[] }[];
  algos: Algo[];
  /** Timed repetitions (timestamp samples) per row. */
  reps: number;
  /** Untimed calls before timing. */
  warmup: number;
  /** Output folder. */
  out: string;
  /** Seed of the random inputs. */
  seed: number;
  /**
   * Seconds after which the remaining cases are listed as skipped (so a run always writes its
   * results inside the host's command limit). Infinity: no limit.
   */
  budgetS: number;
  /** Seconds the PyTorch peer may take before it is stopped (its rows so far are kept). */
  torchBudgetS: number;
  /**
   * Hidden test knob (`--part-bytes N`): tensors over N bytes are stored across buffers, as
   * K/V over `maxStorageBufferBindingSize` are on a real GPU, so a smoke run on a software
   * adapter exercises the split path. Undefined: the device's binding limit.
   */
  partBytes?: number;
}

/** The (B, Hq, Hkv) grid of the issue. */
export const DEFAULT_CONFIGS: readonly HeadConfig[] = [
  { B: 1, Hq: 32, Hkv: 32 },
  { B: 1, Hq: 64, Hkv: 64 },
  { B: 4, Hq: 32, Hkv: 32 },
  { B: 16, Hq: 32, Hkv: 32 },
  { B: 1, Hq: 32, Hkv: 8 },
  { B: 4, Hq: 32, Hkv: 8 },
  { B: 16, Hq: 32, Hkv: 8 },
];

const K = 1024;
/** Context lengths of the full sweep. */
export const DEFAULT_NS: readonly number[] = [1 * K, 4 * K, 16 * K, 64 * K, 256 * K, 512 * K];

/**
 * The headline comparison (lean over our own flash at B=1, N=512k: K and V 4 GiB
 * each in float16, stored across buffers on an H200): run first, so no budget can skip it.
 */
export function isHeadline(c: Case): boolean {
  return c.dtype === "float16" && c.D === 128 && c.B === 1 && c.Hq === 32 && c.Hkv === 32 &&
    c.N === 512 * K && c.kvLens === undefined;
}

/** The ragged batches of the issue: one long sequence among short ones. */
export const RAGGED: Readonly<Record<string, readonly number[]>> = {
  "ragged-a": [512, 2 * K, 128 * K, 1 * K],
  "ragged-b": [64 * K, ...Array(15).fill(1 * K)],
};
const RAGGED_HEADS = [{ Hq: 32, Hkv: 32 }, { Hq: 32, Hkv: 8 }];

/** `4k` → 4096, `1m` → 1048576, `300` → 300. */
export function parseCount(s: string): number {
  const m = /^(\d+)([kKmM]?)$/.exec(s.trim());
  if (!m) throw new Error(`expected a count like 512, 4k or 1m, got "${s}"`);
  const mult = m[2] === "" ? 1 : m[2].toLowerCase() === "k" ? K : K * K;
  const n = Number(m[1]) * mult;
  if (n <= 0) throw new Error(`expected a positive count, got "${s}"`);
  return n;
}

/** 4096 → `4k`, 524288 → `512k`, 300 → `300`. */
export function fmtCount(n: number): string {
  if (n >= K * K && n % (K * K) === 0) return `${n / (K * K)}m`;
  if (n >= K && n % K === 0) return `${n / K}k`;
  return String(n);
}

function parseDType(s: string): BenchDType {
  const t = s.trim().toLowerCase();
  if (t === "f16" || t === "float16" || t === "half") return "float16";
  if (t === "f32" || t === "float32") return "float32";
  throw new Error(`--dtype: expected float16 or float32 (f16, f32), got "${s}"`);
}

function parseHeads(s: string): HeadConfig {
  const m = /^(\d+)x(\d+)x(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--configs: expected BxHqxHkv (e.g. 4x32x8), got "${s}"`);
  const c = { B: Number(m[1]), Hq: Number(m[2]), Hkv: Number(m[3]) };
  if (!c.B || !c.Hq || !c.Hkv || c.Hq % c.Hkv !== 0) {
    throw new Error(`--configs: need B, Hq, Hkv > 0 and Hq % Hkv == 0, got "${s}"`);
  }
  return c;
}

function headsOnly(c: HeadConfig): { Hq: number; Hkv: number } {
  return { Hq: c.Hq, Hkv: c.Hkv };
}

function list(s: string): string[] {
  return s.split(",").map((x) => x.trim()).filter((x) => x.length > 0);
}

/** Usage text for `--help`. */
export const USAGE = `deno task bench [flags]

  --quick              representative subset (D=128 f16, a few configs, N in {4k, 64k}, one ragged)
  --smoke              one tiny config, 3 reps (for software adapters / CI)
  --cpu                CPU backend instead of WebGPU (flash and lean, typed-array read ceiling)
  --dtype f16,f32      K/V dtypes
  --d 64,128           head dims
  --n 1k,4k,64k        context lengths (k = 1024)
  --configs LIST       BxHqxHkv items and ragged lists, e.g. 1x32x32,4x32x8,ragged-a,ragged-b:32x8
  --algos LIST         any of ${ALL_ALGOS.join(", ")}
  --no-peers           skip the peers (ONNX Runtime Web, PyTorch; with --cpu ONNX Runtime's native CPU provider)
  --reps R             timed samples per row (default 20)
  --seed S             seed of the random inputs (default 1)
  --budget S           start no case expected to end after S seconds, listing the rest as
                       skipped (default 330 for the full sweep, 75 with --quick, none otherwise)
  --torch-budget S     seconds the PyTorch peer may run (default 100, 25 with --quick)
  --out DIR            results folder (default bench/results)
`;

/** Parses the command line (throws with the offending flag on bad input). */
export function parseArgs(args: readonly string[]): BenchOptions {
  const o: BenchOptions = {
    quick: false,
    smoke: false,
    cpu: false,
    peers: true,
    dtypes: ["float16", "float32"],
    ds: [128, 64],
    ns: [...DEFAULT_NS],
    configs: [...DEFAULT_CONFIGS],
    ragged: Object.entries(RAGGED).map(([name, lens]) => ({
      name,
      lens: [...lens],
      heads: RAGGED_HEADS,
    })),
    algos: [...OWN_ALGOS, ...PEER_ALGOS], // variant rows only when named
    reps: 20,
    warmup: 3,
    out: "bench/results",
    seed: 1,
    budgetS: 330,
    torchBudgetS: 100,
  };
  const given = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(0, eq) : a;
    const takes = [
      "--dtype",
      "--d",
      "--n",
      "--configs",
      "--algos",
      "--out",
      "--reps",
      "--seed",
      "--budget",
      "--torch-budget",
      "--part-bytes",
    ];
    if (["--quick", "--smoke", "--cpu", "--no-peers"].includes(name)) {
      given.set(name, "");
    } else if (takes.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new Error(`${name} needs a value`);
      given.set(name, v);
    } else {
      throw new Error(`unknown flag "${a}"\n\n${USAGE}`);
    }
  }
  o.cpu = given.has("--cpu");
  if (o.cpu) {
    // CPU-sized defaults: single-digit seconds per case on a laptop; the peer is ONNX
    // Runtime's native CPU provider (--no-peers skips it).
    o.algos = ["lean", "flash", "ort-cpu"];
    o.ds = [128];
    o.ns = [1 * K, 4 * K, 16 * K];
    o.configs = [{ B: 1, Hq: 32, Hkv: 32 }, { B: 1, Hq: 32, Hkv: 8 }, { B: 4, Hq: 32, Hkv: 8 }];
    o.ragged = [];
    o.reps = 10;
    o.budgetS = Infinity;
  }
  if (given.has("--quick")) {
    o.quick = true;
    o.budgetS = 75;
    o.torchBudgetS = 25;
    o.dtypes = ["float16"];
    o.ds = [128];
    o.ns = o.cpu ? [4 * K] : [4 * K, 64 * K];
    o.configs = [{ B: 1, Hq: 32, Hkv: 32 }, { B: 4, Hq: 32, Hkv: 8 }, { B: 16, Hq: 32, Hkv: 8 }];
    o.ragged = o.cpu
      ? []
      : [{ name: "ragged-a", lens: [...RAGGED["ragged-a"]], heads: [{ Hq: 32, Hkv: 8 }] }];
  }
  if (given.has("--smoke")) {
    o.smoke = true;
    o.peers = false; // a smoke run (CI) downloads and starts no peer
    o.dtypes = ["float16"];
    o.ds = [64];
    o.ns = [512];
    o.configs = [{ B: 1, Hq: 4, Hkv: 2 }];
    o.ragged = [{ name: "ragged-smoke", lens: [100, 300], heads: [{ Hq: 4, Hkv: 2 }] }];
    o.reps = 3;
    o.warmup = 1;
    o.budgetS = Infinity;
  }
  if (given.has("--no-peers")) o.peers = false;
  const v = (k: string) => given.get(k);
  if (v("--dtype") !== undefined) o.dtypes = [...new Set(list(v("--dtype")!).map(parseDType))];
  if (v("--d") !== undefined) {
    o.ds = list(v("--d")!).map((x) => {
      const d = Number(x);
      if (!Number.isInteger(d) || d <= 0 || d % 4 !== 0) {
        throw new Error(`--d: expected positive multiples of 4, got "${x}"`);
      }
      return d;
    });
  }
  if (v("--n") !== undefined) o.ns = list(v("--n")!).map(parseCount);
  if (v("--configs") !== undefined) {
    o.configs = [];
    o.ragged = [];
    for (const item of list(v("--configs")!)) {
      const [name, heads] = item.split(":");
      if (name in RAGGED) {
        o.ragged.push({
          name,
          lens: [...RAGGED[name]],
          heads: heads ? [headsOnly(parseHeads(`1x${heads}`))] : RAGGED_HEADS,
        });
      } else {
        o.configs.push(parseHeads(item));
      }
    }
  }
  if (v("--algos") !== undefined) {
    o.algos = list(v("--algos")!).map((a) => {
      if (!(ALL_ALGOS as readonly string[]).includes(a)) {
        throw new Error(`--algos: unknown "${a}"; expected some of ${ALL_ALGOS.join(", ")}`);
      }
      return a as Algo;
    });
  }
  if (v("--reps") !== undefined) {
    o.reps = Number(v("--reps"));
    if (!Number.isInteger(o.reps) || o.reps < 1) throw new Error(`--reps: expected >= 1`);
  }
  if (v("--seed") !== undefined) o.seed = Number(v("--seed"));
  for (
    const [flag, key] of [["--budget", "budgetS"], ["--torch-budget", "torchBudgetS"]] as const
  ) {
    if (v(flag) === undefined) continue;
    const x = Number(v(flag));
    if (!(x > 0)) throw new Error(`${flag}: expected a positive number of seconds`);
    o[key] = x;
  }
  if (v("--part-bytes") !== undefined) {
    const x = Number(v("--part-bytes"));
    if (!Number.isSafeInteger(x) || x < 16) {
      throw new Error(`--part-bytes: expected an integer number of bytes >= 16`);
    }
    o.partBytes = x;
  }
  if (v("--out") !== undefined) o.out = v("--out")!;
  return o;
}

/**
 * Expands the options into cases: per dtype and D, the head grid × N, then the ragged lists;
 * the headline case ({@link isHeadline}) moved to the front.
 */
export function buildCases(o: BenchOptions): Case[] {
  const cases: Case[] = [];
  for (const dtype of o.dtypes) {
    for (const D of o.ds) {
      for (const c of o.configs) for (const N of o.ns) cases.push({ dtype, D, ...c, N });
      for (const r of o.ragged) {
        for (const h of r.heads) {
          cases.push({
            dtype,
            D,
            Hq: h.Hq,
            Hkv: h.Hkv,
            B: r.lens.length,
            N: Math.max(...r.lens),
            kvLens: [...r.lens],
            ragged: r.name,
          });
        }
      }
    }
  }
  return [...cases.filter(isHeadline), ...cases.filter((c) => !isHeadline(c))];
}

/** Bytes per stored element. */
export function bytesOf(dtype: BenchDType): number {
  return dtype === "float16" ? 2 : 4;
}

/** Bytes of K (and of V) as stored: `B·Hkv·N·D` elements. */
export function kvBytes(c: Case): number {
  return c.B * c.Hkv * c.N * c.D * bytesOf(c.dtype);
}

/**
 * Bytes attention must read: K and V of the valid keys only (`kvLens` sum for ragged batches),
 * the numerator of effective bandwidth.
 */
export function readBytes(c: Case): number {
  const keys = c.kvLens ? c.kvLens.reduce((a, b) => a + b, 0) : c.B * c.N;
  return 2 * keys * c.Hkv * c.D * bytesOf(c.dtype);
}

/** Device limits the skip rules look at. */
export interface MemoryLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** The GPU's memory, of which a case may hold {@link MEMORY_HEADROOM}; default: unlimited. */
  budget?: number;
  /** The backend's split size (`webgpu({ partBytes })`); default: the binding limit. */
  partBytes?: number;
}

/** `2147483648` → `2.000 GiB (2147483648 B)`: exact where limits sit a few bytes apart. */
export function fmtBytes(x: number): string {
  return `${(x / 2 ** 30).toFixed(3)} GiB (${x} B)`;
}

/** Bytes above which the backend stores a tensor across buffers, and the limit's name. */
export function splitLimit(lim: MemoryLimits): { bytes: number; name: string } {
  const bind = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  return lim.partBytes !== undefined && lim.partBytes < bind
    ? { bytes: lim.partBytes, name: "--part-bytes" }
    : {
      bytes: bind,
      name: lim.maxBufferSize < lim.maxStorageBufferBindingSize
        ? "maxBufferSize"
        : "maxStorageBufferBindingSize",
    };
}

/**
 * The `[n0, n1)` key ranges K and V of `c` are stored in (the backend's own cut, see
 * backends/webgpu/_chunked.ts), or null when each fits one binding. Throws when one key
 * position alone is over the limit ({@link skipReason} says so first).
 */
export function kvSplit(c: Case, lim: MemoryLimits): [number, number][] | null {
  const { bytes, name } = splitLimit(lim);
  return partLayout([c.B, c.Hkv, c.N, c.D], bytesOf(c.dtype), bytes, name)?.ranges ?? null;
}

/**
 * Why `c` cannot run with these limits, or null when it can. K/V over one binding run
 * stored across buffers (cut along N); what cannot run is one key position (`B·Hkv·D`
 * elements, the smallest part) over a binding, or, with a memory budget (the GPU's memory),
 * more than {@link MEMORY_HEADROOM} of it held at once by the case with rows `algos`: K, V
 * and every row's copies (`_memory.ts`).
 */
export function skipReason(
  c: Case,
  lim: MemoryLimits,
  algos: readonly string[] = [],
): string | null {
  const mb = fmtBytes;
  const slab = c.B * c.Hkv * c.D * bytesOf(c.dtype);
  const { bytes, name } = splitLimit(lim);
  if (slab > bytes) {
    return `one key position of K/V (B·Hkv·D = ${c.B * c.Hkv * c.D} elements, ${
      mb(slab)
    }) exceeds ${name} ${mb(bytes)}: no split along N fits`;
  }
  if (lim.budget === undefined) return null;
  const need = caseMemory(c, algos, lim);
  const cap = Math.floor(MEMORY_HEADROOM * lim.budget);
  if (need.total <= cap) return null;
  const items = need.items.map(([what, b]) => `${what} ${(b / 2 ** 30).toFixed(2)}`);
  return `needs ${mb(need.total)} at once (GiB: ${items.join(", ")}), over ${
    100 * MEMORY_HEADROOM
  } % of the memory budget ${mb(lim.budget)}`;
}

/**
 * Why naive attention cannot run `c`, or null. Naive takes K and V whole (one buffer each:
 * only flash and lean accept them split), materialises f32 copies of f16 K and V and several
 * `[B, Hq, N]` float32 score tensors, each of which must fit one binding.
 */
export function naiveSkipReason(c: Case, lim: MemoryLimits): string | null {
  const f32kv = c.B * c.Hkv * c.N * c.D * 4;
  const scores = c.B * c.Hq * c.N * 4;
  const mb = fmtBytes;
  const { bytes, name } = splitLimit(lim);
  if (kvBytes(c) > bytes) {
    return `naive takes K/V in one buffer; K/V ${mb(kvBytes(c))} each exceed ${name} ${
      mb(bytes)
    } and are stored across buffers`;
  }
  if (f32kv > bytes) {
    return `naive's float32 K/V ${mb(f32kv)} exceed the binding limit ${mb(bytes)}`;
  }
  const extra = (c.dtype === "float16" ? 2 * f32kv : 0) + 4 * scores;
  if (lim.budget !== undefined && 2 * kvBytes(c) + extra > lim.budget) {
    return `naive needs ~${mb(2 * kvBytes(c) + extra)}, over the memory budget ${mb(lim.budget)}`;
  }
  return null;
}

/**
 * Timed samples for a call of `callMs` GPU milliseconds: all `reps` up to 5 ms, then about
 * 100 ms worth (at least 5): a 512k case's 25 ms flash call needs no 20 samples for a median.
 */
export function repsFor(callMs: number, reps: number): number {
  if (!(callMs > 5)) return reps;
  return Math.min(reps, Math.max(5, Math.ceil(100 / callMs)));
}

/**
 * Seconds a case is expected to take, from the streaming-read bandwidth `gbs` (GB/s) seen so
 * far: making the inputs, the ceiling (4 workgroup counts), the host's float64 rows, and per
 * algorithm its check, warm-up, timed and wall calls (each assumed 4× slower than the
 * ceiling: flash at B=1 runs one workgroup per head) plus ~0.3 s of readbacks and set-up.
 * Deliberately pessimistic: it decides whether a case still fits in the budget.
 */
export function estimateCaseS(
  c: Case,
  algos: number,
  o: { reps: number; warmup: number },
  gbs: number,
): number {
  const ceilMs = readBytes(c) / (gbs * 1e6);
  const ceiling = 4 * (o.warmup + repsFor(ceilMs, o.reps)) * ceilMs;
  const callMs = 4 * ceilMs;
  const calls = 3 + o.warmup + repsFor(callMs, o.reps) +
    (callMs > 5 ? Math.max(5, Math.ceil(160 / callMs)) : Math.min(200, 80 / callMs));
  const fill = (2 * kvBytes(c)) / (gbs * 1e6) * 2;
  const longest = c.kvLens ? Math.max(...c.kvLens) : c.N;
  const hostMs = 4 * longest * c.D / 5e5; // two rows: q·k and p·v per key, ~5e8 a second
  return 0.5 + (ceiling + fill + hostMs + algos * calls * callMs) / 1000 + 0.3 * algos;
}

/** One-line name of a case for progress lines and tables. */
export function caseName(c: Case): string {
  const shape = `B${c.B} Hq${c.Hq} Hkv${c.Hkv} D${c.D} ${c.dtype === "float16" ? "f16" : "f32"}`;
  return c.kvLens ? `${shape} ${c.ragged}` : `${shape} N=${fmtCount(c.N)}`;
}
