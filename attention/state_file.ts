/**
 * Attention states as files other tools read: `saveAttentionState` / `loadAttentionState`
 * write and read `.safetensors` (https://github.com/huggingface/safetensors: an 8-byte
 * little-endian header length, a JSON header, then the raw little-endian tensors), which numpy
 * reads with a few lines and PyTorch with `safetensors.torch.load_file`. So a state computed
 * here can be merged by another process or framework, and the other way round.
 *
 * The file holds two tensors and string metadata:
 * - `"out"`: the normalised output `[B, Hq, Sq, D]`, `F32` or `F16` (the tensor's dtype);
 * - `"lse"`: `[B, Hq, Sq]`, `F32`: the natural log of each row's softmax denominator,
 *   `log Σ_j exp(s_j)` over the keys the state covers, with `s` the scaled scores; `-inf` for
 *   a row that saw no key (its `out` is 0);
 * - `__metadata__`: `format` = `leanattn-attention-state`, `layout`, and `lse_log_base` = `e`.
 *   On load, `lse_log_base` = `2` (FlashInfer's convention) is converted to natural log.
 *
 * @module
 */
import { fromValues } from "../tensor/creation.ts";
import type { TensorBackend } from "../tensor/storage.ts";
import { ArgumentError, DTypeError, ShapeError, show } from "../tensor/errors.ts";
import { readOptions } from "../tensor/options.ts";
import { fmt, sizeOf } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { AttentionState } from "./merge.ts";

/** Options of {@link loadAttentionState}. */
export interface LoadStateOptions {
  /** Where the loaded tensors live (default: the default backend). */
  backend?: TensorBackend;
}

/** What {@link loadAttentionState} returns: the state and the file's metadata. */
export interface LoadedAttentionState extends AttentionState {
  /** The file's `__metadata__` (string to string). */
  metadata: Record<string, string>;
}

const FORMAT = "leanattn-attention-state";
const LAYOUT = "out [B, Hq, Sq, D] (normalised output), lse [B, Hq, Sq] (log-sum-exp of the " +
  "scaled scores over the keys this state covers; -inf: no key)";
/** Largest header accepted on load (the format's own limit). */
const MAX_HEADER = 100_000_000;

/**
 * Writes `{ out, lse }` to `path` as `.safetensors` (see the module doc for the layout). The
 * file appears whole or not at all (written beside it, then renamed).
 *
 * @example
 * ```ts ignore
 * import { flashAttention, randn, saveAttentionState } from "./mod.ts";
 * const q = randn([1, 2, 1, 16], { seed: 1 });
 * const k = randn([1, 2, 40, 16], { seed: 2 });
 * const state = flashAttention(q, k, k, { returnLse: true });
 * await saveAttentionState("state.safetensors", state);
 * // Python: from safetensors.numpy import load_file; load_file("state.safetensors")["lse"]
 * ```
 */
export async function saveAttentionState(
  path: string | URL,
  state: AttentionState,
): Promise<void> {
  const op = "saveAttentionState";
  checkPath(op, path);
  if (!state || typeof state !== "object") {
    throw new ArgumentError(`${op}: expected { out, lse }, got ${show(state)}`);
  }
  const { out, lse } = state;
  if (!(out instanceof Tensor) || !(lse instanceof Tensor)) {
    throw new ArgumentError(`${op}: out and lse must be Tensors, got ${show(out)}, ${show(lse)}`);
  }
  const [B, H, S] = out.shape;
  if (
    out.shape.length !== 4 || lse.shape.length !== 3 ||
    lse.shape[0] !== B || lse.shape[1] !== H || lse.shape[2] !== S
  ) {
    throw new ShapeError(
      `${op}: expected out [B, Hq, Sq, D] and lse [B, Hq, Sq], got out ${fmt(out.shape)}, ` +
        `lse ${fmt(lse.shape)}`,
    );
  }
  const [outValues, lseValues] = await Promise.all([out.data(), lse.data()]);
  const outBytes = out.dtype === "float16"
    ? bytesOf(Float16Array.from(outValues))
    : bytesOf(outValues);
  const lseBytes = bytesOf(lseValues); // float32 whatever lse's storage dtype
  const header = {
    __metadata__: { format: FORMAT, layout: LAYOUT, lse_log_base: "e" },
    out: {
      dtype: out.dtype === "float16" ? "F16" : "F32",
      shape: [...out.shape],
      data_offsets: [0, outBytes.length],
    },
    lse: {
      dtype: "F32",
      shape: [...lse.shape],
      data_offsets: [outBytes.length, outBytes.length + lseBytes.length],
    },
  };
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // the data starts 8-byte aligned
  const head = new TextEncoder().encode(json);
  const file = new Uint8Array(8 + head.length + outBytes.length + lseBytes.length);
  new DataView(file.buffer).setBigUint64(0, BigInt(head.length), true);
  file.set(head, 8);
  file.set(outBytes, 8 + head.length);
  file.set(lseBytes, 8 + head.length + outBytes.length);
  const target = path instanceof URL ? path : new URL(path, `file://${Deno.cwd()}/`);
  const temp = new URL(`${target.href}.${crypto.randomUUID()}.partial`);
  try {
    await Deno.writeFile(temp, file);
    await Deno.rename(temp, target);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/**
 * Reads a state written by {@link saveAttentionState}, or by any tool that writes the same
 * two tensors (`out` F32/F16 `[B, Hq, Sq, D]`, `lse` F32 `[B, Hq, Sq]`) in `.safetensors`.
 * Malformed files raise {@link ArgumentError}, {@link DTypeError} or {@link ShapeError} naming
 * what was expected; nothing is allocated before the whole file has been checked.
 */
export async function loadAttentionState(
  path: string | URL,
  options: LoadStateOptions = {},
): Promise<LoadedAttentionState> {
  const op = "loadAttentionState";
  checkPath(op, path);
  const opts = readOptions<LoadStateOptions>(op, options, ["backend"]);
  const bytes = await Deno.readFile(path);
  const { header, data } = parseSafetensors(bytes, `${op}: ${String(path)}`);
  const where = `${op}: ${String(path)}`;
  const outT = tensorEntry(header, "out", ["F32", "F16"], 4, data, where);
  const lseT = tensorEntry(header, "lse", ["F32"], 3, data, where);
  const [B, H, S] = outT.shape;
  if (lseT.shape[0] !== B || lseT.shape[1] !== H || lseT.shape[2] !== S) {
    throw new ShapeError(
      `${where}: lse must be [B, Hq, Sq] of out ${fmt(outT.shape)}, got ${fmt(lseT.shape)}`,
    );
  }
  const metadata = readMetadata(header, where);
  const base = metadata.lse_log_base ?? "e";
  if (base !== "e" && base !== "2") {
    throw new ArgumentError(`${where}: lse_log_base must be "e" or "2", got ${show(base)}`);
  }
  if (base === "2") { for (let i = 0; i < lseT.values.length; i++) lseT.values[i] *= Math.LN2; }
  const backend = opts.backend;
  const out = fromValues(outT.values, outT.shape, { backend, dtype: outT.dtype });
  try {
    const lse = fromValues(lseT.values, lseT.shape, { backend, dtype: "float32" });
    return { out, lse, metadata };
  } catch (e) {
    out.dispose();
    throw e;
  }
}

/** The header (parsed JSON object) and the data section of a `.safetensors` file. */
function parseSafetensors(
  bytes: Uint8Array,
  where: string,
): { header: Record<string, unknown>; data: Uint8Array } {
  if (bytes.length < 8) {
    throw new ArgumentError(`${where}: not a safetensors file (${bytes.length} bytes)`);
  }
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(Math.min(MAX_HEADER, bytes.length - 8))) {
    throw new ArgumentError(
      `${where}: header length ${n} exceeds the file (${bytes.length} bytes): not safetensors`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(8, 8 + Number(n)),
    ));
  } catch (e) {
    throw new ArgumentError(`${where}: the header is not UTF-8 JSON: ${e}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new ArgumentError(`${where}: the header must be a JSON object, got ${show(header)}`);
  }
  return { header: header as Record<string, unknown>, data: bytes.subarray(8 + Number(n)) };
}

interface Entry {
  dtype: "float32" | "float16";
  shape: number[];
  values: Float32Array;
}

function tensorEntry(
  header: Record<string, unknown>,
  name: string,
  dtypes: readonly string[],
  rank: number,
  data: Uint8Array,
  where: string,
): Entry {
  const e = header[name] as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!e || typeof e !== "object") {
    throw new ArgumentError(`${where}: no tensor "${name}" (found: ${Object.keys(header)})`);
  }
  if (typeof e.dtype !== "string" || !dtypes.includes(e.dtype)) {
    throw new DTypeError(
      `${where}: "${name}" must be ${dtypes.join(" or ")}, got ${show(e.dtype)}`,
    );
  }
  const shape = e.shape;
  if (
    !Array.isArray(shape) || shape.length !== rank ||
    !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new ShapeError(`${where}: "${name}" must have rank ${rank}, got shape ${show(shape)}`);
  }
  const width = e.dtype === "F16" ? 2 : 4;
  const size = sizeOf(shape);
  const off = e.data_offsets;
  if (
    !Array.isArray(off) || off.length !== 2 || !off.every(Number.isSafeInteger) ||
    off[0] < 0 || off[1] > data.length || off[1] - off[0] !== size * width
  ) {
    throw new ArgumentError(
      `${where}: "${name}" data_offsets ${show(off)} must span ${size * width} bytes within ` +
        `the ${data.length}-byte data section`,
    );
  }
  const raw = data.slice(off[0], off[1]); // a copy: aligned, and little-endian on every host
  const view = new DataView(raw.buffer);
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    values[i] = width === 2 ? view.getFloat16(2 * i, true) : view.getFloat32(4 * i, true);
  }
  return { dtype: width === 2 ? "float16" : "float32", shape: shape as number[], values };
}

function readMetadata(header: Record<string, unknown>, where: string): Record<string, string> {
  const m = header.__metadata__ ?? {};
  if (
    typeof m !== "object" || m === null || Array.isArray(m) ||
    !Object.values(m).every((v) => typeof v === "string")
  ) {
    throw new ArgumentError(`${where}: __metadata__ must map strings to strings, got ${show(m)}`);
  }
  return { ...(m as Record<string, string>) };
}

function bytesOf(a: Float32Array | Float16Array): Uint8Array {
  // Little-endian on every host Deno runs on (x86-64, arm64), as safetensors requires.
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Throws {@link ArgumentError} unless `path` is a non-empty string or a file URL. */
function checkPath(op: string, path: unknown): void {
  const ok = (typeof path === "string" && path.length > 0) ||
    (path instanceof URL && path.protocol === "file:");
  if (!ok) {
    throw new ArgumentError(
      `${op}: path must be a non-empty string or a file: URL, got ${show(path)}`,
    );
  }
}
