/**
 * Options are strict and read once: an unknown option name is an ArgumentError that names
 * it, lists the valid ones and suggests the nearest; a getter is read exactly once; garbage
 * where a number, a tensor or a backend belongs gets a named error, never a raw one.
 */
import { ok as assert, strictEqual, throws } from "node:assert/strict";
import {
  ArgumentError,
  calibrateGrid,
  flashAttention,
  leanAttention,
  leanSchedule,
  matmul,
  naiveAttention,
  randn,
  renderSchedule,
  tensor,
  webgpu,
  zeros,
} from "../mod.ts";
import { describeBackends } from "./_backends.ts";

function argError(f: () => unknown, ...words: string[]): void {
  throws(f, (e: unknown) => {
    assert(e instanceof ArgumentError, `expected ArgumentError, got ${e}`);
    for (const w of words) assert(e.message.includes(w), `"${e.message}" lacks "${w}"`);
    return true;
  });
}

describeBackends("attention ops refuse unknown option names and read each once", async (b) => {
  const q = randn([1, 2, 1, 8], { seed: 1, backend: b });
  const k = randn([1, 1, 40, 8], { seed: 2, backend: b });
  try {
    argError(() => leanAttention(q, k, k, { kvLen: [3] } as never), '"kvLen"', "kvLens", "grid");
    argError(() => leanAttention(q, k, k, { gird: 3 } as never), '"gird"', 'mean "grid"');
    argError(() => flashAttention(q, k, k, { numSplit: 2 } as never), 'mean "numSplits"');
    argError(() => naiveAttention(q, k, k, { grid: 2 } as never), '"grid"', "scale, causal");
    argError(() => leanAttention(q, k, k, [] as never), "options must be an object");
    argError(() => leanAttention({ shape: [1, 2, 1, 8] } as never, k, k), "q must be a Tensor");
    let reads = 0;
    const sneaky = {
      get scale() {
        return ++reads <= 1 ? 0.25 : NaN;
      },
    };
    const once = await leanAttention(q, k, k, sneaky).data();
    strictEqual(reads, 1, "scale read once");
    const plain = await leanAttention(q, k, k, { scale: 0.25 }).data();
    assert(once.every((x, i) => x === plain[i]), "same result as a plain object");
  } finally {
    q.dispose();
    k.dispose();
  }
});

Deno.test("creation, matmul, schedules and webgpu() refuse unknown options and garbage", async () => {
  argError(() => zeros([2], { dtyp: "float16" } as never), '"dtyp"', 'mean "dtype"');
  argError(() => tensor([1, 2], { backend: {} as never }), "backend must be a Backend");
  argError(() => tensor([1, "a"] as never), "element 1 is not a number");
  argError(() => tensor(new DataView(new ArrayBuffer(8)) as never), "DataView");
  argError(() => tensor(new BigInt64Array(2) as never), "BigInt64Array");
  argError(() => tensor({} as never), "data must be");
  argError(() => randn([2], { seed: NaN }), "finite numeric seed");
  argError(() => randn([2], { seed: 1, sed: 2 } as never), '"sed"');
  const a = tensor([[1, 2], [3, 4]]);
  argError(() => matmul(a, a, { transposeC: true } as never), '"transposeC"');
  a.dispose();
  const s = leanSchedule({ batch: 1, kvHeads: 1, kvLens: [10], tileSize: 4, grid: 2 });
  argError(() => renderSchedule(null as never), "expected a schedule");
  argError(() => renderSchedule(s, { width: NaN }), "width must be a positive number");
  argError(() => renderSchedule(s, { height: 3 } as never), '"height"');
  await calibrateGrid(null as never).then(
    () => assert(false, "calibrateGrid(null) resolved"),
    (e) => assert(e instanceof ArgumentError && e.message.includes("Backend"), String(e)),
  );
  await webgpu({ partbytes: 1 << 20 } as never).then(
    () => assert(false, "webgpu() accepted a misspelt option"),
    (e) => assert(e instanceof ArgumentError && e.message.includes('"partBytes"'), String(e)),
  );
});
