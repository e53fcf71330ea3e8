/**
 * Attention states as `.safetensors` files: save → load is bit-exact (float32 and float16
 * outputs, −∞ LSE rows included) on every backend; a header written by hand (as another tool
 * would write it, key order, padding and all) loads; lse in log base 2 is converted; malformed
 * files raise named errors and allocate nothing.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { flashAttention } from "../attention/flash.ts";
import { loadAttentionState, saveAttentionState } from "../attention/state_file.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { ArgumentError, DTypeError, ShapeError } from "../tensor/errors.ts";
import { describeBackends } from "./_backends.ts";

async function tempFile(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "leanattn-state-" });
  return `${dir}/state.safetensors`;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
}

describeBackends("saveAttentionState → loadAttentionState is bit-exact", async (backend) => {
  for (const dtype of ["float32", "float16"] as DType[]) {
    const q = randn([2, 4, 3, 16], { seed: 1, backend, dtype });
    const k = randn([2, 2, 50, 16], { seed: 2, backend, dtype });
    // kvLens 0 for the second sequence: its rows are out 0, lse −∞.
    const state = flashAttention(q, k, k, { kvLens: [50, 0], returnLse: true });
    const path = await tempFile();
    await saveAttentionState(path, state);
    const live = backend.memory().liveCount;
    const got = await loadAttentionState(path, { backend });
    assertEquals(backend.memory().liveCount, live + 2);
    assertEquals([got.out.dtype, got.lse.dtype], [dtype, "float32"]);
    assertEquals([...got.out.shape], [2, 4, 3, 16]);
    assertEquals([...got.lse.shape], [2, 4, 3]);
    assert(sameBits(await got.out.data(), await state.out.data()), `${dtype} out`);
    const lse = await got.lse.data();
    assert(sameBits(lse, await state.lse.data()), `${dtype} lse`);
    assert(lse.slice(12).every((x) => x === -Infinity), "empty rows keep lse −∞");
    assertEquals(got.metadata.lse_log_base, "e");
    for (const t of [q, k, state.out, state.lse, got.out, got.lse]) t.dispose();
    await Deno.remove(path);
  }
});

/** A safetensors file as another tool writes it: header keys in any order, no metadata. */
function handWritten(header: string, data: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(header);
  const file = new Uint8Array(8 + head.length + data.length);
  new DataView(file.buffer).setBigUint64(0, BigInt(head.length), true);
  file.set(head, 8);
  file.set(data, 8 + head.length);
  return file;
}

describeBackends(
  "a hand-written safetensors file loads; log2 lse is converted",
  async (backend) => {
    const out = Float32Array.of(1, -2, 0.5, 3); // [1, 1, 2, 2]
    const lse = Float32Array.of(0.25, -Infinity);
    const data = new Uint8Array(24);
    data.set(new Uint8Array(lse.buffer), 0); // lse first: offsets, not order, place tensors
    data.set(new Uint8Array(out.buffer), 8);
    const header = `{"lse":{"dtype":"F32","shape":[1,1,2],"data_offsets":[0,8]},` +
      `"__metadata__":{"lse_log_base":"2"},` +
      `"out":{"shape":[1,1,2,2],"dtype":"F32","data_offsets":[8,24]}}   `;
    const path = await tempFile();
    await Deno.writeFile(path, handWritten(header, data));
    const got = await loadAttentionState(path, { backend });
    assertEquals([...(await got.out.data())], [...out]);
    assertEquals([...(await got.lse.data())], [Math.fround(0.25 * Math.LN2), -Infinity]);
    got.out.dispose();
    got.lse.dispose();

    const live = backend.memory().liveCount;
    const bad: [string, Uint8Array, new (...a: never[]) => Error, string][] = [
      ["short", new Uint8Array(4), ArgumentError, "not a safetensors"],
      [
        "huge header",
        handWritten("{}", new Uint8Array()).fill(255, 0, 8),
        ArgumentError,
        "exceeds",
      ],
      [
        "no out",
        handWritten(header.replace('"out"', '"o"'), data),
        ArgumentError,
        'no tensor "out"',
      ],
      [
        "bf16",
        handWritten(
          header.replace('"dtype":"F32","data_offsets":[8', '"dtype":"BF16","data_offsets":[8'),
          data,
        ),
        DTypeError,
        "F32 or F16",
      ],
      ["rank", handWritten(header.replace("[1,1,2,2]", "[1,4]"), data), ShapeError, "rank 4"],
      [
        "lse shape",
        handWritten(header.replace("[1,1,2]", "[2,1,1]"), data),
        ShapeError,
        "lse must be",
      ],
      [
        "offsets",
        handWritten(header.replace("[8,24]", "[8,28]"), data),
        ArgumentError,
        "data_offsets",
      ],
      ["base", handWritten(header.replace('"2"', '"10"'), data), ArgumentError, "lse_log_base"],
    ];
    for (const [what, bytes, cls, mention] of bad) {
      await Deno.writeFile(path, bytes);
      await rejects(loadAttentionState(path, { backend }), (e: Error) => {
        assert(e instanceof cls && e.message.includes(mention), `${what}: ${e}`);
        return true;
      });
    }
    await rejects(loadAttentionState(path, { backend, dtype: "float16" } as never), ArgumentError);
    assertEquals(backend.memory().liveCount, live, "a refused load allocated storage");
    await Deno.remove(path);
  },
);

describeBackends(
  "saveAttentionState refuses a state of the wrong shape and writes nothing",
  async (backend) => {
    const path = await tempFile();
    const out = tensor([[1, 2]], { backend });
    await rejects(saveAttentionState(path, { out, lse: out }), ShapeError);
    await rejects(saveAttentionState(path, null as never), ArgumentError);
    await rejects(Deno.stat(path), Deno.errors.NotFound);
    out.dispose();
  },
);

Deno.test("bench/peers/state_merge_check.ts: a state written by Python merges with leanattn's", async () => {
  const probe = await new Deno.Command("python3", { args: ["-c", "import numpy"], stderr: "null" })
    .output().catch(() => null);
  if (!probe?.success) {
    console.warn("  (python3 with numpy not found: skipped; the GPU host runs it with torch)");
    return;
  }
  const script = new URL("../bench/peers/state_merge_check.ts", import.meta.url).pathname;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--cpu", "--n", "600", "--engine", "numpy"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  assert(r.code === 0 && out.includes("ok: both merges"), out);
});
