/**
 * Every bad-input class throws its named error, the message names what was expected and what
 * was given, and a failed call neither changes its inputs nor leaks storage.
 */
import { ok, rejects, throws } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { naiveAttention } from "../attention/naive.ts";
import { add, div, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { transpose } from "../ops/transpose.ts";
import { exp, log, neg } from "../ops/unary.ts";
import { full, randn, tensor, zeros } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  LeanattnError,
  ShapeError,
} from "../tensor/errors.ts";
import { fromNdarray, type NdArrayLike, toNdarray } from "../tensor/ndarray.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { describeBackends } from "./_backends.ts";

type ErrorClass = new (...args: never[]) => LeanattnError;

/** Asserts `f` throws `cls` whose message contains every string of `mentions`. */
function expectError(cls: ErrorClass, f: () => unknown, mentions: string[], what: string): void {
  throws(f, (e: unknown) => {
    ok(e instanceof cls, `${what}: expected ${cls.name}, got ${e}`);
    ok(e instanceof LeanattnError, `${what}: ${cls.name} must extend LeanattnError`);
    ok((e as Error).name === cls.name, `${what}: error name ${(e as Error).name}`);
    for (const m of mentions) {
      ok(
        (e as Error).message.includes(m),
        `${what}: message "${(e as Error).message}" lacks "${m}"`,
      );
    }
    return true;
  }, what);
}

/** The same backend seen as a different one: tensors on it must not mix with the original. */
function twin(b: Backend): Backend {
  return new Proxy(b, {
    get(target, prop) {
      if (prop === "name") return `${target.name}-twin`;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

const rnd = (backend: Backend, shape: number[], seed: number, dtype: DType = "float32") =>
  randn(shape, { seed, dtype, backend });

describeBackends("ShapeError: shapes that do not fit, named in the message", (backend) => {
  const a = rnd(backend, [2, 3], 1);
  const b = rnd(backend, [4, 3], 2);
  const v = rnd(backend, [3], 3);
  for (
    const [name, op] of [["add", add], ["sub", sub], ["mul", mul], ["div", div], [
      "maximum",
      maximum,
    ]] as const
  ) {
    expectError(ShapeError, () => op(a, b), ["[2, 3]", "[4, 3]"], `${name} broadcast`);
  }
  expectError(ShapeError, () => matmul(v, a), ["rank", "[3]"], "matmul rank 1");
  expectError(ShapeError, () => matmul(a, a), ["K=3", "K=2", "[2, 3]"], "matmul inner dims");
  expectError(
    ShapeError,
    () => matmul(a, b, { transposeA: true }),
    ["K=2", "K=4"],
    "matmul transposeA",
  );
  const x3 = rnd(backend, [2, 2, 3], 4);
  const y3 = rnd(backend, [3, 3, 2], 5);
  expectError(ShapeError, () => matmul(x3, y3), ["[2]", "[3]"], "matmul batch broadcast");
  expectError(ShapeError, () => sum(a, 2), ["axis 2", "rank 2"], "sum axis");
  expectError(ShapeError, () => max(a, -3), ["axis -3", "rank 2"], "max axis");
  expectError(ShapeError, () => sum(a, 0.5), ["axis 0.5"], "sum fractional axis");
  expectError(ShapeError, () => softmax(a, 5), ["axis 5"], "softmax axis");
  expectError(ShapeError, () => softmax(tensor(1, { backend })), ["rank 0"], "softmax of a scalar");
  expectError(ShapeError, () => transpose(a, [0, 0]), ["[0, 0]", "[2, 3]"], "transpose duplicate");
  expectError(ShapeError, () => transpose(a, [0]), ["[0]"], "transpose short perm");
  expectError(ShapeError, () => transpose(a, [0, 2]), ["[0, 2]"], "transpose out of range");
  expectError(ShapeError, () => a.reshape([4, 2]), ["[2, 3]", "[4, 2]"], "reshape size");
  expectError(
    ShapeError,
    () => tensor([1, 2, 3], { shape: [2, 2], backend }),
    ["[2, 2]", "3"],
    "tensor size",
  );
  expectError(ShapeError, () => tensor([[1, 2], [3]], { backend }), ["ragged"], "ragged nested");
  expectError(ShapeError, () => zeros([2, -1], { backend }), ["-1"], "negative dim");

  const q = rnd(backend, [1, 4, 2, 8], 6);
  const k = rnd(backend, [1, 2, 5, 8], 7);
  const k3 = rnd(backend, [1, 3, 5, 8], 8);
  const kd = rnd(backend, [1, 2, 5, 4], 9);
  const kb = rnd(backend, [2, 2, 5, 8], 10);
  expectError(ShapeError, () => naiveAttention(a, k, k), ["rank 4", "[2, 3]"], "attention q rank");
  expectError(ShapeError, () => naiveAttention(q, k3, k3), ["Hq=4", "Hkv=3"], "attention GQA");
  expectError(
    ShapeError,
    () => naiveAttention(q, kd, kd),
    ["[1, 4, 2, 8]", "[1, 2, 5, 4]"],
    "attention D",
  );
  expectError(ShapeError, () => naiveAttention(q, kb, kb), ["[2, 2, 5, 8]"], "attention batch");
  expectError(ShapeError, () => naiveAttention(q, k, kd), ["[1, 2, 5, 4]"], "attention k/v shapes");
});

describeBackends("DTypeError: unknown dtypes and operands that disagree", (backend) => {
  const f = rnd(backend, [2, 2], 1);
  const h = rnd(backend, [2, 2], 2, "float16");
  for (
    const [name, op] of [["add", add], ["sub", sub], ["mul", mul], ["div", div], [
      "maximum",
      maximum,
    ]] as const
  ) {
    expectError(DTypeError, () => op(f, h), ["float32", "float16"], `${name} mixed`);
  }
  expectError(DTypeError, () => matmul(h, f), ["float16", "float32"], "matmul mixed");
  expectError(DTypeError, () => cast(f, "int8" as DType), ["int8"], "cast to unknown");
  expectError(
    DTypeError,
    () => tensor([1], { dtype: "float64" as DType, backend }),
    ["float64"],
    "tensor dtype",
  );
  const q16 = rnd(backend, [1, 2, 1, 4], 3, "float16");
  const k32 = rnd(backend, [1, 2, 3, 4], 4);
  const k16 = rnd(backend, [1, 2, 3, 4], 5, "float16");
  expectError(
    DTypeError,
    () => naiveAttention(q16, k32, k32),
    ["float16", "float32"],
    "attention q vs k",
  );
  expectError(
    DTypeError,
    () => naiveAttention(q16, k16, k32),
    ["float16", "float32"],
    "attention k vs v",
  );
});

describeBackends("BackendMismatchError: operands on different backends", (backend) => {
  const other = twin(backend);
  const a = rnd(backend, [2, 2], 1);
  const b = rnd(other, [2, 2], 1);
  for (
    const [name, op] of [["add", add], ["sub", sub], ["mul", mul], ["div", div], [
      "maximum",
      maximum,
    ]] as const
  ) {
    expectError(
      BackendMismatchError,
      () => op(a, b),
      [backend.name, other.name],
      `${name} backends`,
    );
  }
  expectError(BackendMismatchError, () => matmul(a, b), [other.name], "matmul backends");
  const q = rnd(backend, [1, 1, 1, 2], 2);
  const k = rnd(other, [1, 1, 3, 2], 3);
  expectError(
    BackendMismatchError,
    () => naiveAttention(q, k, k),
    [other.name],
    "attention backends",
  );
});

describeBackends("DisposedTensorError: every op refuses a disposed tensor", async (backend) => {
  const x = rnd(backend, [2, 3], 1);
  const live = rnd(backend, [2, 3], 2);
  const q = rnd(backend, [1, 1, 1, 3], 3);
  x.dispose();
  x.dispose(); // idempotent
  ok(x.isDisposed);
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
  // A view keeps its storage alive after the original is disposed.
  const y = rnd(backend, [2, 3], 4);
  const view = y.reshape([6]);
  const want = await y.data();
  y.dispose();
  ok((await view.data()).every((v, i) => v === want[i]), "view lost its data");
});

describeBackends("ArgumentError: options and arguments of the wrong kind", (backend) => {
  const a = rnd(backend, [2, 2], 1);
  expectError(ArgumentError, () => add(a, "1" as unknown as number), ["string"], "add string");
  expectError(ArgumentError, () => mul([1, 2] as unknown as Tensor, a), ["array"], "mul array");
  expectError(ArgumentError, () => exp(null as unknown as Tensor), ["null"], "exp null");
  expectError(
    ArgumentError,
    () => matmul(a, a, { transposeA: 1 as unknown as boolean }),
    ["1"],
    "matmul flag",
  );
  expectError(ArgumentError, () => sum(a, 0, "yes" as unknown as boolean), ["yes"], "sum keepDims");
  expectError(
    ArgumentError,
    () => fromNdarray({ shape: [2] } as unknown as NdArrayLike),
    ["ndarray"],
    "fromNdarray non-ndarray",
  );
  const q = rnd(backend, [2, 1, 1, 4], 2);
  const k = rnd(backend, [2, 1, 3, 4], 3);
  expectError(
    ArgumentError,
    () => naiveAttention(q, k, k, { kvLens: [3] }),
    ["2", "1 lengths"],
    "kvLens length",
  );
  expectError(
    ArgumentError,
    () => naiveAttention(q, k, k, { kvLens: [3, 4] }),
    ["[0, 3]", "4"],
    "kvLens range",
  );
  expectError(ArgumentError, () => naiveAttention(q, k, k, { scale: NaN }), ["NaN"], "scale");
  expectError(
    ArgumentError,
    () => naiveAttention(q, k, k, { causal: "yes" as unknown as boolean }),
    ["yes"],
    "causal",
  );
});

describeBackends("a failed call leaves its inputs intact and leaks nothing", async (backend) => {
  const a = tensor([[1, 2, 3], [4, 5, 6]], { backend });
  const b = full([4, 3], 2, { backend });
  const h = full([2, 3], 1, { backend, dtype: "float16" });
  const q = rnd(backend, [1, 2, 1, 3], 1);
  const before = backend.memory().liveCount;
  const bad: (() => unknown)[] = [
    () => add(a, b),
    () => add(a, h),
    () => matmul(a, a),
    () => sum(a, 7),
    () => softmax(a, -3),
    () => transpose(a, [1, 1]),
    () => cast(a, "bf16" as DType),
    () => naiveAttention(q, a.reshape([1, 1, 2, 3]), a.reshape([1, 1, 2, 3]), { kvLens: [5] }),
  ];
  for (const f of bad) throws(f, LeanattnError);
  ok(backend.memory().liveCount === before, "a failed op left storage behind");
  ok(JSON.stringify(await a.toArray()) === "[[1,2,3],[4,5,6]]", "input changed");
});
