/**
 * Tensor lifetimes: dispose() frees storage once and is idempotent; a disposed tensor is refused
 * by every op, read and copy with a DisposedTensorError naming it; views share storage, which
 * lives until the last view is disposed. Memory bounds and reclaiming dropped tensors:
 * tests/memory_test.ts.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { naiveAttention } from "../attention/naive.ts";
import { add, div, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { transpose } from "../ops/transpose.ts";
import { exp, log, neg } from "../ops/unary.ts";
import { randn } from "../tensor/creation.ts";
import { DisposedTensorError } from "../tensor/errors.ts";
import { toNdarray } from "../tensor/ndarray.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

describeBackends(
  "reshape shares storage, infers -1, and survives disposing the original",
  async (backend) => {
    const t = randn([2, 3, 4], { seed: 1, backend });
    const want = await t.data();
    const before = backend.memory().liveCount;
    const r = t.reshape([4, -1]);
    assertEquals([...r.shape], [4, 6]);
    assertEquals(backend.memory().liveCount, before, "reshape must not copy");
    assertEquals(await r.data(), want);
    // Counts compared across synchronous steps only: across an await, the finalizer of a
    // tensor another test dropped may free its storage (seen once on an H200).
    let live = backend.memory().liveCount;
    t.dispose();
    assertEquals(backend.memory().liveCount, live, "a live view keeps the storage");
    assertEquals(await r.data(), want);
    const again = r.reshape([24]);
    r.dispose();
    assertEquals(await again.data(), want);
    live = backend.memory().liveCount;
    again.dispose();
    assertEquals(backend.memory().liveCount, live - 1, "last view frees the storage");
  },
);

describeBackends(
  "dispose frees storage once; every op, read and copy refuses a disposed tensor",
  async (backend) => {
    const live = randn([2, 3], { seed: 2, backend });
    const q = randn([1, 1, 1, 3], { seed: 3, backend });
    const before = backend.memory().liveCount;
    const x = randn([2, 3], { seed: 1, backend });
    assertEquals(backend.memory().liveCount, before + 1);
    assert(!x.isDisposed);
    x.dispose();
    assert(x.isDisposed);
    assertEquals(backend.memory().liveCount, before);
    x.dispose(); // idempotent
    assert(x.isDisposed);
    assertEquals(backend.memory().liveCount, before);
    assert(String(x).includes("disposed"));
    const uses: [string, () => unknown][] = [
      ["add", () => add(x, live)],
      ["add (second operand)", () => add(live, x)],
      ["sub", () => sub(x, 1)],
      ["mul", () => mul(x, 1)],
      ["div", () => div(live, x)],
      ["maximum", () => maximum(x, live)],
      ["exp", () => exp(x)],
      ["neg", () => neg(x)],
      ["log", () => log(x)],
      ["sum", () => sum(x)],
      ["max", () => max(x, 0)],
      ["softmax", () => softmax(x)],
      ["matmul", () => matmul(live, x, { transposeB: true })],
      ["transpose", () => transpose(x)],
      ["cast", () => cast(x, "float16")],
      ["reshape", () => x.reshape([3, 2])],
      ["data", () => x.data()],
      ["attention", () => naiveAttention(q, x, x)],
    ];
    for (const [name, f] of uses) expectError(DisposedTensorError, f, ["[2, 3]", "dispose"], name);
    await rejects(toNdarray(x), DisposedTensorError);
    await rejects(x.toArray(), DisposedTensorError);
    await rejects(x.to(backend), DisposedTensorError);
    live.dispose();
    q.dispose();
  },
);
