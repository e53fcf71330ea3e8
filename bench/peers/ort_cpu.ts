/**
 * Peer: ONNX Runtime's native CPU execution provider (the `onnxruntime-node` npm package, its
 * Linux/macOS/Windows binaries), timed by `deno task bench --cpu` beside the library's CPU
 * attention on the same inputs.
 *
 * The model is the attention graph ORT runs best here, built in memory (`_onnx_proto.ts`):
 * com.microsoft `FusedMatMul` (q · Kᵀ with `transB`, so K keeps the library's `[B, Hkv, N, D]`
 * layout, the scale folded in) → `Softmax` → `MatMul` with V; GQA by viewing q as
 * `[B, Hkv, group, D]`; a ragged batch adds a 0/−∞ mask `[B, 1, 1, N]`. The contrib
 * `GroupQueryAttention` node was measured too and was ~6× slower on a decode step (2 cores,
 * (1, 32, 8) 16k float32: 306 ms with past/present sharing one buffer, against 48 ms for this
 * graph; measured on the 2-core development machine, 2026-12-06), so the graph is the fairer
 * peer. Inputs are bound without copies (measured: 0.04 ms a run for 268 MB of inputs to a
 * graph that only reads their shapes). float16 rows are absent under Deno: its Node-API
 * binding hands onnxruntime-node's float16 tensors no bytes ("not enough space: expected N,
 * got 0" for a Uint16Array or a Float16Array alike), and converting to float32 would double
 * the bytes the peer reads.
 *
 * @module
 */
import { encodeModel, ONNX_TYPE } from "./_onnx_proto.ts";

/** The pinned package. */
export const ORT_NODE = "onnxruntime-node@1.30.0";

// deno-lint-ignore no-explicit-any
type Ort = any;

/** One decode case on the CPU: host copies of the very values the library read. */
export interface OrtCpuCase {
  B: number;
  Hq: number;
  Hkv: number;
  N: number;
  D: number;
  dtype: "float16" | "float32";
  kvLens?: readonly number[];
  q: Float32Array | Float16Array;
  k: Float32Array | Float16Array;
  v: Float32Array | Float16Array;
}

/** A loaded peer. */
export interface OrtCpuPeer {
  version: string;
  /**
   * Builds the session for `c` (on `threads` threads of ORT's pool; default: ORT's, all
   * cores); `run` does one timed call and returns the output `[B, Hq, D]`.
   */
  prepare(c: OrtCpuCase, threads?: number): Promise<() => Promise<Float32Array>>;
}

/** The model of one case. */
export function attentionGraph(c: Omit<OrtCpuCase, "q" | "k" | "v">): Uint8Array {
  const t = ONNX_TYPE[c.dtype];
  const group = c.Hq / c.Hkv;
  const masked = c.kvLens !== undefined;
  return encodeModel({
    irVersion: 8,
    opsets: [{ domain: "", version: 17 }, { domain: "com.microsoft", version: 1 }],
    nodes: [
      {
        opType: "FusedMatMul",
        domain: "com.microsoft",
        inputs: ["q", "k"],
        outputs: [masked ? "s0" : "s"],
        attributes: [{ name: "transB", int: 1 }, { name: "alpha", float: 1 / Math.sqrt(c.D) }],
      },
      ...(masked ? [{ opType: "Add", inputs: ["s0", "mask"], outputs: ["s"] }] : []),
      // axis 3 (the key axis): the proto writer takes no negative ints.
      { opType: "Softmax", inputs: ["s"], outputs: ["p"], attributes: [{ name: "axis", int: 3 }] },
      { opType: "MatMul", inputs: ["p", "v"], outputs: ["o"] },
    ],
    inputs: [
      { name: "q", elemType: t, dims: [c.B, c.Hkv, group, c.D] },
      { name: "k", elemType: t, dims: [c.B, c.Hkv, c.N, c.D] },
      { name: "v", elemType: t, dims: [c.B, c.Hkv, c.N, c.D] },
      ...(masked ? [{ name: "mask", elemType: t, dims: [c.B, 1, 1, c.N] }] : []),
    ],
    outputs: [{ name: "o", elemType: t, dims: [c.B, c.Hkv, group, c.D] }],
  });
}

/** Loads onnxruntime-node, or says why it is absent. */
export async function loadOrtCpu(): Promise<OrtCpuPeer | { absent: string }> {
  let ort: Ort;
  try {
    // deno-lint-ignore no-import-prefix
    ort = await import("npm:onnxruntime-node@1.30.0");
  } catch (e) {
    return { absent: `onnxruntime-node could not be loaded: ${msg(e)}` };
  }
  return {
    version: ort.env?.versions?.node ?? ORT_NODE,
    async prepare(c, threads) {
      const session = await ort.InferenceSession.create(attentionGraph(c), {
        executionProviders: ["cpu"],
        graphOptimizationLevel: "all",
        ...(threads ? { intraOpNumThreads: threads } : {}),
      });
      const type = c.dtype === "float16" ? "float16" : "float32";
      // Plain (not shared) typed arrays, which ORT binds without a copy; its float16 tensors
      // take the raw bits as a Uint16Array.
      const own = (a: ArrayLike<number>) =>
        c.dtype === "float16" ? new Uint16Array(Float16Array.from(a).buffer) : Float32Array.from(a);
      const feeds: Record<string, Ort> = {
        q: new ort.Tensor(type, own(c.q), [c.B, c.Hkv, c.Hq / c.Hkv, c.D]),
        k: new ort.Tensor(type, own(c.k), [c.B, c.Hkv, c.N, c.D]),
        v: new ort.Tensor(type, own(c.v), [c.B, c.Hkv, c.N, c.D]),
      };
      if (c.kvLens) {
        const m = new Float32Array(c.B * c.N);
        c.kvLens.forEach((L, b) => m.fill(-Infinity, b * c.N + L, (b + 1) * c.N));
        feeds.mask = new ort.Tensor(type, own(m), [
          c.B,
          1,
          1,
          c.N,
        ]);
      }
      return async () => {
        const r = await session.run(feeds);
        const o = r.o.data as Float32Array | Uint16Array;
        return o instanceof Uint16Array
          ? Float32Array.from(new Float16Array(o.buffer, o.byteOffset, o.length))
          : Float32Array.from(o);
      };
    },
  };
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}
