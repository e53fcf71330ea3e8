/**
 * The reclaim check of tests/memory_test.ts, run in a process of its own:
 *
 *     deno run -A --v8-flags=--expose-gc tests/_gc_reclaim.ts cpu|webgpu
 *
 * Alone in the process, no other test's dropped tensors can be finalised in the middle and
 * move the backend's live count, and `gc()` is exposed, so collection is forced rather than
 * waited for. Tensors are only ever held by the `held` object, never by a local of an async
 * frame that is suspended at an `await` (such a frame may keep a stale reference alive).
 * Prints one JSON line: `{ ok, steps }` or `{ ok: false, error }`.
 */
import type { Backend } from "../backends/backend.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { webgpu } from "../backends/webgpu/webgpu_backend.ts";
import { randn } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

const held: { view: Tensor | null } = { view: null };

function allocate(backend: Backend): void {
  for (let i = 0; i < 200; i++) randn([1000], { seed: i, backend });
  const kept = randn([4, 250], { seed: 7, backend });
  held.view = kept.reshape([1000]); // the original is dropped, the view is kept
}

/** gc() and a turn of the event loop (finalisers run as tasks) until `done`; the rounds used. */
async function collect(done: () => boolean, what: string): Promise<number> {
  for (let round = 1; round <= 50; round++) {
    gc!();
    await new Promise((r) => setTimeout(r, 0));
    if (done()) return round;
  }
  throw new Error(`${what}: not reclaimed after 50 forced collections`);
}

function viewMatches(backend: Backend): Promise<boolean> {
  const fresh = randn([1000], { seed: 7, backend });
  return Promise.all([held.view!.data(), fresh.data()]).then(([got, want]) => {
    fresh.dispose();
    return got.every((x, i) => x === want[i]);
  });
}

async function main(): Promise<unknown> {
  const backend: Backend = Deno.args[0] === "webgpu" ? await webgpu() : cpu();
  const before = backend.memory();
  allocate(backend);
  if (backend.memory().liveCount < before.liveCount + 201) throw new Error("nothing allocated");
  // Everything but the view's storage goes; the view still reads its values.
  const first = await collect(
    () => backend.memory().liveCount === before.liveCount + 1,
    "dropped tensors",
  );
  if (!(await viewMatches(backend))) throw new Error("the view lost its data");
  held.view = null;
  const second = await collect(
    () => backend.memory().liveCount === before.liveCount,
    "the dropped view",
  );
  const after = backend.memory();
  if (after.liveBytes !== before.liveBytes) {
    throw new Error(`live bytes ${before.liveBytes} → ${after.liveBytes}`);
  }
  return { ok: true, steps: [first, second] };
}

let result: unknown;
try {
  result = await main();
} catch (e) {
  result = { ok: false, error: String(e) };
}
console.log(JSON.stringify(result));
Deno.exit(0); // a WebGPU device would keep the process alive
