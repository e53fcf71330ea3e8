/**
 * A minimal protobuf writer for ONNX models, enough to build one `GroupQueryAttention` node in
 * memory: varints, length-delimited fields and fixed32 floats, and the few ONNX messages
 * (ModelProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto, TypeProto) by their
 * field numbers from onnx.proto3. No dependency on protobufjs or an `.onnx` file on disk.
 *
 * @module
 */

/** Wire-format writer. Fields are appended in the order written. */
export class ProtoWriter {
  #bytes: number[] = [];

  /** Raw varint (non-negative integers up to 2^53). */
  varint(n: number): this {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint: bad value ${n}`);
    while (n >= 0x80) {
      this.#bytes.push((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    this.#bytes.push(n);
    return this;
  }

  #key(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }

  /** An int32/int64/enum field (wire type 0). Negative values are not needed here. */
  int(field: number, n: number): this {
    return this.#key(field, 0).varint(n);
  }

  /** A float field (wire type 5, little-endian fixed32). */
  float(field: number, x: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, x, true);
    this.#key(field, 5);
    for (const v of b) this.#bytes.push(v);
    return this;
  }

  /** A bytes field (wire type 2). */
  bytes(field: number, b: Uint8Array): this {
    this.#key(field, 2).varint(b.length);
    for (const v of b) this.#bytes.push(v);
    return this;
  }

  /** A UTF-8 string field. */
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  /** An embedded message field. */
  message(field: number, m: ProtoWriter): this {
    return this.bytes(field, m.finish());
  }

  /** The encoded bytes. */
  finish(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

/** ONNX TensorProto.DataType codes used here. */
export const ONNX_TYPE = { float32: 1, int32: 6, int64: 7, float16: 10 } as const;

/** One graph input or output: name, element type, dims (a string is a symbolic dim). */
export interface ValueInfo {
  name: string;
  elemType: number;
  dims: readonly (number | string)[];
}

/** One node attribute. */
export type Attribute = { name: string; int: number } | { name: string; float: number } | {
  name: string;
  string: string;
};

/** One node. */
export interface NodeDef {
  opType: string;
  domain?: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  attributes?: readonly Attribute[];
}

/** A whole single-graph model. */
export interface ModelDef {
  nodes: readonly NodeDef[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  /** Operator set imports, e.g. `[{domain: "", version: 21}, {domain: "com.microsoft", version: 1}]`. */
  opsets: readonly { domain: string; version: number }[];
  irVersion?: number;
  graphName?: string;
}

function valueInfo(v: ValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.dims) {
    const dim = new ProtoWriter();
    // TensorShapeProto.Dimension: dim_value = 1, dim_param = 2.
    if (typeof d === "number") dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  // TypeProto.Tensor: elem_type = 1, shape = 2. TypeProto: tensor_type = 1.
  const tensor = new ProtoWriter().int(1, v.elemType).message(2, shape);
  const type = new ProtoWriter().message(1, tensor);
  // ValueInfoProto: name = 1, type = 2.
  return new ProtoWriter().string(1, v.name).message(2, type);
}

function attribute(a: Attribute): ProtoWriter {
  // AttributeProto: name = 1, f = 2, i = 3, s = 4, type = 20 (FLOAT 1, INT 2, STRING 3).
  const w = new ProtoWriter().string(1, a.name);
  if ("int" in a) return w.int(3, a.int).int(20, 2);
  if ("float" in a) return w.float(2, a.float).int(20, 1);
  return w.string(4, a.string).int(20, 3);
}

function node(n: NodeDef): ProtoWriter {
  // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7.
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const a of n.attributes ?? []) w.message(5, attribute(a));
  if (n.domain) w.string(7, n.domain);
  return w;
}

/** Encodes a ModelProto. */
export function encodeModel(m: ModelDef): Uint8Array {
  // GraphProto: node = 1, name = 2, input = 11, output = 12.
  const g = new ProtoWriter();
  for (const n of m.nodes) g.message(1, node(n));
  g.string(2, m.graphName ?? "graph");
  for (const i of m.inputs) g.message(11, valueInfo(i));
  for (const o of m.outputs) g.message(12, valueInfo(o));
  // ModelProto: ir_version = 1, producer_name = 2, graph = 7, opset_import = 8.
  const w = new ProtoWriter().int(1, m.irVersion ?? 8).string(2, "leanattn-bench");
  w.message(7, g);
  for (const o of m.opsets) {
    // OperatorSetIdProto: domain = 1, version = 2.
    w.message(8, new ProtoWriter().string(1, o.domain).int(2, o.version));
  }
  return w.finish();
}

/** Shapes of a GroupQueryAttention decode step with a static KV cache of `maxSeq` slots. */
export interface GqaShape {
  B: number;
  Hq: number;
  Hkv: number;
  D: number;
  /** Slots of the static cache (past and present share it). */
  maxSeq: number;
  /** `"float16"` or `"float32"`. */
  dtype: "float16" | "float32";
  /** Softmax scale (default 1/√D). */
  scale?: number;
}

/**
 * A one-node model: com.microsoft `GroupQueryAttention` decoding one token. Inputs query
 * `[B, 1, Hq·D]`, key/value `[B, 1, Hkv·D]`, past_key/past_value `[B, Hkv, maxSeq, D]`,
 * seqlens_k `[B]` (int32: total length − 1), total_sequence_length `[1]` (int32). Outputs
 * output, present_key, present_value (present shares past's shape: the static cache).
 */
export function gqaDecodeModel(s: GqaShape): Uint8Array {
  const t = ONNX_TYPE[s.dtype];
  const cache = [s.B, s.Hkv, s.maxSeq, s.D];
  return encodeModel({
    irVersion: 8,
    opsets: [{ domain: "", version: 17 }, { domain: "com.microsoft", version: 1 }],
    nodes: [{
      opType: "GroupQueryAttention",
      domain: "com.microsoft",
      name: "gqa",
      inputs: [
        "query",
        "key",
        "value",
        "past_key",
        "past_value",
        "seqlens_k",
        "total_sequence_length",
      ],
      outputs: ["output", "present_key", "present_value"],
      attributes: [
        { name: "num_heads", int: s.Hq },
        { name: "kv_num_heads", int: s.Hkv },
        { name: "scale", float: s.scale ?? 1 / Math.sqrt(s.D) },
      ],
    }],
    inputs: [
      { name: "query", elemType: t, dims: [s.B, 1, s.Hq * s.D] },
      { name: "key", elemType: t, dims: [s.B, 1, s.Hkv * s.D] },
      { name: "value", elemType: t, dims: [s.B, 1, s.Hkv * s.D] },
      { name: "past_key", elemType: t, dims: cache },
      { name: "past_value", elemType: t, dims: cache },
      { name: "seqlens_k", elemType: ONNX_TYPE.int32, dims: [s.B] },
      { name: "total_sequence_length", elemType: ONNX_TYPE.int32, dims: [1] },
    ],
    outputs: [
      { name: "output", elemType: t, dims: [s.B, 1, s.Hq * s.D] },
      { name: "present_key", elemType: t, dims: cache },
      { name: "present_value", elemType: t, dims: cache },
    ],
  });
}
