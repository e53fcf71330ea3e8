/**
 * Tests of the benchmark's peers: the in-memory ONNX model (ORT runs it and agrees with the
 * float64 reference) and the Python peer (its fallback, its JSON-lines protocol with a stand-in
 * torch, a run cut short).
 */
import { encodeModel, ProtoWriter } from "../bench/peers/_onnx_proto.ts";
import { parseTorchOutput, runTorchPeer } from "../bench/_torch.ts";
import { referenceAttention } from "../testing/reference.ts";
import { assert, assertEquals, assertMatch, assertThrows, gpuTest } from "./_bench.ts";

Deno.test("ProtoWriter: varints, floats and nested messages in wire format", () => {
  assertEquals([...new ProtoWriter().varint(300).finish()], [0xac, 0x02]);
  assertEquals([...new ProtoWriter().int(1, 150).finish()], [0x08, 0x96, 0x01]);
  assertEquals([...new ProtoWriter().string(2, "hi").finish()], [0x12, 2, 0x68, 0x69]);
  assertEquals([...new ProtoWriter().float(2, 1).finish()], [0x15, 0, 0, 0x80, 0x3f]);
  assertEquals(
    [...new ProtoWriter().message(3, new ProtoWriter().int(1, 1)).finish()],
    [0x1a, 2, 0x08, 1],
  );
  assertEquals([...new ProtoWriter().varint(2 ** 35).finish()], [128, 128, 128, 128, 128, 1]);
  assertThrows(() => new ProtoWriter().varint(-1), RangeError);
  const m = encodeModel({ nodes: [], inputs: [], outputs: [], opsets: [] });
  assertEquals([...m.slice(0, 2)], [0x08, 8]); // ir_version = 8 first
});

gpuTest(
  "ORT GroupQueryAttention peer agrees with the float64 reference (ragged, GQA)",
  async (dev) => {
    const { loadOrtPeer } = await import("../bench/peers/ort_webgpu.ts");
    const peer = await loadOrtPeer(dev);
    if ("absent" in peer) {
      // Only a missing timestamp feature is an acceptable reason here: ORT is a pinned import.
      assertMatch(peer.absent, /timestamp-query/);
      return;
    }
    const B = 2, Hq = 4, Hkv = 2, D = 32, N = 200, kvLens = [200, 37];
    let s = 7;
    const rnd = (n: number) =>
      new Float16Array(n).map(() =>
        ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 4 - 2
      );
    const q = rnd(B * Hq * D), k = rnd(B * Hkv * N * D), v = rnd(B * Hkv * N * D);
    const up = (x: Float16Array) => {
      const b = dev.createBuffer({
        size: x.byteLength,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      dev.queue.writeBuffer(b, 0, x as Float16Array<ArrayBuffer>);
      return b;
    };
    if (!dev.features.has("shader-f16")) return;
    const r = await peer.run({
      B,
      Hq,
      Hkv,
      D,
      N,
      kvLens,
      dtype: "float16",
      q: up(q),
      k: up(k),
      v: up(v),
      reps: 2,
      warmup: 1,
      wallCalls: 2,
    });
    const ref = referenceAttention({ q, k, v, B, Hq, Hkv, Sq: 1, N, D, kvLens });
    const refMax = ref.out.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    let diff = 0;
    for (let i = 0; i < ref.out.length; i++) diff = Math.max(diff, Math.abs(ref.out[i] - r.out[i]));
    // float16 output rounding plus float16 arithmetic inside ORT, over up to N terms.
    const tol = 2 ** -10 * refMax * (1 + Math.log2(N));
    assert(diff <= tol, `max abs diff ${diff} > ${tol}`);
    assert(r.passes >= 1);
    assert(r.gpuMs !== null && r.gpuMs > 0);
    assert(r.wallMs > 0);
  },
);

Deno.test({
  name: "torch peer: absent with a reason when python3, torch or CUDA is missing",
  sanitizeResources: false,
  fn: async () => {
    const missing = await runTorchPeer([], ["torch-flash"], {
      reps: 1,
      warmup: 0,
      python: "/nonexistent/python3",
    });
    assertMatch(missing.absent!, /cannot start/);
    let hasPython = true;
    try {
      await new Deno.Command("python3", { args: ["-c", "0"] }).output();
    } catch {
      hasPython = false;
    }
    if (!hasPython) return;
    const syntax = await new Deno.Command("python3", {
      args: [
        "-c",
        "import ast,sys; ast.parse(open(sys.argv[1]).read())",
        "bench/peers/torch_sdpa.py",
      ],
    }).output();
    assertEquals(syntax.code, 0, new TextDecoder().decode(syntax.stderr));
    const r = await runTorchPeer(
      [{ dtype: "float16", D: 64, B: 1, Hq: 4, Hkv: 2, N: 128 }],
      ["torch-flash"],
      { reps: 2, warmup: 1 },
    );
    // Either torch ran on a GPU, or the reason it could not is given.
    assert(r.absent !== undefined || r.rows.length === 1, JSON.stringify(r));
  },
});

/** A stand-in `torch` package: enough API for torch_sdpa.py's control flow, no numbers. */
const FAKE_TORCH: Record<string, string> = {
  "torch/__init__.py": `
import os
__version__ = "0.0-fake"
float16 = "f16"
float32 = "f32"
int32 = "i32"
jagged = "jagged"
# FAKE_TORCH_MAX: every "max |difference|" (default 0.5); FAKE_TORCH_EVENT_MS: every event pair.
_MAX = float(os.environ.get("FAKE_TORCH_MAX", "0.5"))
_EVENT_MS = float(os.environ.get("FAKE_TORCH_EVENT_MS", "0.25"))
class _T:
    device = "cuda"
    def __init__(self, shape): self.shape = tuple(shape)
    def float(self): return self
    def repeat_interleave(self, g, dim):
        s = list(self.shape); s[dim] *= g; return _T(s)
    def transpose(self, a, b):
        s = list(self.shape); s[a], s[b] = s[b], s[a]; return _T(s)
    def __matmul__(self, o): return _T(self.shape[:-1] + o.shape[-1:])
    def __truediv__(self, x): return self
    def __sub__(self, o): return self
    def __lt__(self, o): return self
    def __getitem__(self, k): return self
    def __invert__(self): return self
    def view(self, *s): return _T(s)
    def reshape(self, *s): return _T(s[0] if len(s) == 1 and isinstance(s[0], tuple) else s)
    def contiguous(self): return self
    def masked_fill(self, m, v): return self
    def abs(self): return self
    def max(self): return _MAX
    def clamp_(self, lo, hi): return self
def mm(a, b): return _T(a.shape[:-1] + b.shape[-1:])
def randn(*shape, dtype=None, device=None, generator=None): return _T(shape)
def tensor(x, dtype=None, device=None): return _T([len(x)])
def arange(n, dtype=None, device=None): return _T([n])
def cat(xs): return _T(xs[0].shape)
class ops:
    class aten:
        @staticmethod
        def _flash_attention_forward(q, *a, **kw): return (_T(q.shape),)
class nested:
    @staticmethod
    def nested_tensor(xs, layout=None): raise RuntimeError("no jagged tensors in the stand-in")
def softmax(x, dim): return x
def device(name): return name
class Generator:
    def __init__(self, device=None): pass
    def manual_seed(self, s): return self
class cuda:
    is_available = staticmethod(lambda: True)
    synchronize = staticmethod(lambda: None)
    get_device_name = staticmethod(lambda: "Fake GPU")
    empty_cache = staticmethod(lambda: None)
    class Event:
        def __init__(self, enable_timing=False): pass
        def record(self): pass
        def elapsed_time(self, other): return _EVENT_MS
    class Stream:
        def wait_stream(self, other): pass
    current_stream = staticmethod(lambda: cuda.Stream())
    class stream:
        def __init__(self, s): pass
        def __enter__(self): return self
        def __exit__(self, *a): return False
    class CUDAGraph:
        def replay(self): pass
    class graph:
        def __init__(self, g): pass
        def __enter__(self):
            from torch.nn.attention import current
            if current[0] == "EFFICIENT_ATTENTION":
                raise RuntimeError("capture not supported here")
            return self
        def __exit__(self, *a): return False
`,
  "torch/nn/__init__.py": "",
  "torch/nn/functional.py": `
def scaled_dot_product_attention(q, k, v, attn_mask=None, enable_gqa=False):
    from torch.nn.attention import current
    if current[0] == "FLASH_ATTENTION" and attn_mask is not None:
        raise RuntimeError("No available kernel. Aborting execution.")
    if current[0] == "CUDNN_ATTENTION" and enable_gqa:
        raise RuntimeError("cuDNN refuses enable_gqa")
    if q.shape[1] != k.shape[1] and not enable_gqa:
        raise RuntimeError("head counts differ")
    return q
`,
  "torch/nn/attention/__init__.py": `
import contextlib, enum
class SDPBackend(enum.Enum):
    CUDNN_ATTENTION = 1
    FLASH_ATTENTION = 2
    EFFICIENT_ATTENTION = 3
current = [None]
@contextlib.contextmanager
def sdpa_kernel(b):
    current[0] = b.name
    yield
    current[0] = None
`,
};

/**
 * Runs `fn` with the stand-in torch on PYTHONPATH and `env` set (all restored after); without
 * python3 it says so and runs nothing.
 */
async function withFakeTorch(env: Record<string, string>, fn: () => Promise<void>) {
  try {
    await new Deno.Command("python3", { args: ["-c", "0"] }).output();
  } catch {
    console.warn("  (no python3: skipped)");
    return;
  }
  const dir = await Deno.makeTempDir();
  for (const [path, text] of Object.entries(FAKE_TORCH)) {
    await Deno.mkdir(`${dir}/${path.split("/").slice(0, -1).join("/")}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${path}`, text);
  }
  const all = { PYTHONPATH: dir, ...env };
  const saved = Object.keys(all).map((k) => [k, Deno.env.get(k)] as const);
  for (const [k, v] of Object.entries(all)) Deno.env.set(k, v);
  try {
    await fn();
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "torch peer: GQA fallback, mask refusal and the JSON-lines protocol (stand-in torch)",
  sanitizeResources: false,
  fn: async () => {
    await withFakeTorch({}, async () => {
      const algos = ["torch-cudnn", "torch-flash", "torch-efficient"];
      const r = await runTorchPeer(
        [
          { dtype: "float16", D: 64, B: 1, Hq: 4, Hkv: 4, N: 128 },
          { dtype: "float16", D: 64, B: 2, Hq: 4, Hkv: 2, N: 300, kvLens: [300, 20] },
        ],
        algos,
        { reps: 3, warmup: 1, budgetS: 60 },
      );
      assertEquals(r.absent, undefined);
      assertEquals(r.cutShort, undefined);
      assertEquals([r.version, r.device], ["0.0-fake", "Fake GPU"]);
      assertEquals(r.rows.length, 6);
      const get = (c: number, a: string) => r.rows.find((x) => x.case === c && x.algo === a)!;
      // Calls under 0.5 ms by events (the stand-in's 0.25) are timed again as a CUDA graph of
      // 10 calls (0.25 per replay: 0.025 a call); where capture fails the events' time stays.
      for (const a of ["torch-cudnn", "torch-flash"]) {
        assertEquals([get(0, a).gpuMs, get(0, a).maxAbsDiff], [0.025, 0.5]);
        assertEquals(get(0, a).note, "gpuMs by a CUDA graph of 10 calls");
        assert(get(0, a).wallMs! >= 0);
      }
      assertEquals(get(0, "torch-efficient").gpuMs, 0.25);
      assertMatch(
        get(0, "torch-efficient").note!,
        /^gpuMs by events per call \(CUDA graph capture failed: capture not supported here\)$/,
      );
      assertEquals(
        get(1, "torch-efficient").note,
        "GQA by enable_gqa=True; ragged via boolean attn_mask over the padded N; " +
          "gpuMs by events per call (CUDA graph capture failed: capture not supported here)",
      );
      assertMatch(
        get(1, "torch-cudnn").note!,
        /^GQA by repeat_interleave .*cuDNN refuses enable_gqa/,
      );
      assertEquals(get(1, "torch-flash").gpuMs, null);
      assertMatch(
        get(1, "torch-flash").absent!,
        /FLASH_ATTENTION cannot run this case: No available kernel/,
      );
    });
  },
});

Deno.test({
  name: "torch peer: the per-sequence and varlen ragged paths timed as CUDA graphs, however slow",
  sanitizeResources: false,
  fn: async () => {
    // Events over GRAPH_BELOW_MS (0.5): per-sequence calls used to keep their events' time.
    await withFakeTorch({ FAKE_TORCH_EVENT_MS: "0.6", FAKE_TORCH_MAX: "0.001" }, async () => {
      const r = await runTorchPeer(
        [{ dtype: "float16", D: 64, B: 2, Hq: 4, Hkv: 2, N: 300, kvLens: [300, 20] }],
        ["torch-ragged"],
        { reps: 3, warmup: 1, budgetS: 60 },
      );
      assertEquals(r.absent, undefined);
      assertEquals(r.rows.length, 1);
      const row = r.rows[0];
      // 0.6 ms a replay of a graph of 10 calls: 0.06 a call.
      assertEquals([row.gpuMs, row.gqa], [0.06, "per-sequence"]);
      assertEquals(
        row.note,
        "fastest: per-sequence; per-sequence 0.0600 ms (CUDA graph); " +
          "varlen 0.0600 ms (CUDA graph); nested: no jagged tensors in the stand-in",
      );
    });
  },
});

Deno.test("parseTorchOutput: a run cut short keeps its rows and says why", () => {
  const lines = [
    JSON.stringify({ torch: "2.11", device: "H100" }),
    JSON.stringify({ row: { case: 0, algo: "torch-flash", gpuMs: 0.1, wallMs: 0.2 } }),
    '{"row": {"case": 1, "alg', // killed mid-line
  ].join("\n");
  const r = parseTorchOutput(lines, 137, true, 30);
  assertEquals(r.rows.length, 1);
  assertEquals(r.version, "2.11");
  assertMatch(r.cutShort!, /30 s budget/);
  assertEquals(parseTorchOutput("", 1).absent, "torch_sdpa.py exited 1 before finishing");
  assertEquals(
    parseTorchOutput(JSON.stringify({ absent: "no CUDA" }), 0).absent,
    "no CUDA",
  );
});
