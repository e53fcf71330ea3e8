/**
 * Bad input to the tensor ops (binary, unary, reductions, softmax, matmul, transpose, cast,
 * where): every wrong shape, dtype, backend and argument throws its named error with expected
 * vs given in the message, and a failed call neither changes its inputs nor leaks storage.
 * Attention: tests/bad_input_attention_test.ts; creation: tests/bad_input_creation_test.ts;
 * disposed tensors: tests/lifetimes_test.ts.
 */
import { ok, throws } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { naiveAttention } from "../attention/naive.ts";
import { add, div, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { transpose } from "../ops/transpose.ts";
import { exp } from "../ops/unary.ts";
import { where } from "../ops/where.ts";
import { full, randn, tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  LeanattnError,
  ShapeError,
} from "../tensor/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { describeBackends } from "./_backends.ts";
import { expectError, twinOf } from "./_assert.ts";

const rnd = (backend: Backend, shape: number[], seed: number, dtype: DType = "float32") =>
  randn(shape, { seed, dtype, backend });

/** The binary ops, which share their operand checks. */
const BINARY = [["add", add], ["sub", sub], ["mul", mul], ["div", div], [
  "maximum",
  maximum,
]] as const;

describeBackends(
  "ops: ShapeError for shapes that do not fit, both named in the message",
  (backend) => {
    const a = rnd(backend, [2, 3], 1);
    const b = rnd(backend, [4, 3], 2);
    const v = rnd(backend, [3], 3);
    for (const [name, op] of BINARY) {
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
    expectError(
      ShapeError,
      () => softmax(tensor(1, { backend })),
      ["rank 0"],
      "softmax of a scalar",
    );
    expectError(
      ShapeError,
      () => transpose(a, [0, 0]),
      ["[0, 0]", "[2, 3]"],
      "transpose duplicate",
    );
    expectError(ShapeError, () => transpose(a, [0]), ["[0]"], "transpose short perm");
    expectError(ShapeError, () => transpose(a, [0, 2]), ["[0, 2]"], "transpose out of range");
  },
);

describeBackends("ops: DTypeError for unknown dtypes and operands that disagree", (backend) => {
  const f = rnd(backend, [2, 2], 1);
  const h = rnd(backend, [2, 2], 2, "float16");
  for (const [name, op] of BINARY) {
    expectError(DTypeError, () => op(f, h), ["float32", "float16"], `${name} mixed`);
  }
  expectError(DTypeError, () => matmul(h, f), ["float16", "float32"], "matmul mixed");
  expectError(DTypeError, () => cast(f, "int8" as DType), ["int8"], "cast to unknown");
});

describeBackends("ops: BackendMismatchError for operands on different backends", (backend) => {
  const other = twinOf(backend);
  const a = rnd(backend, [2, 2], 1);
  const b = rnd(other, [2, 2], 1);
  for (const [name, op] of BINARY) {
    expectError(
      BackendMismatchError,
      () => op(a, b),
      [backend.name, other.name],
      `${name} backends`,
    );
  }
  expectError(BackendMismatchError, () => matmul(a, b), [other.name], "matmul backends");
});

describeBackends("ops: ArgumentError for options and arguments of the wrong kind", (backend) => {
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
});

describeBackends("where: named errors, and nothing allocated on failure", (backend) => {
  const c = randn([2, 3], { seed: 1, backend });
  const a = randn([4, 3], { seed: 2, backend });
  const h = randn([2, 3], { seed: 3, dtype: "float16", backend });
  const before = backend.memory().liveCount;
  expectError(ShapeError, () => where(c, a, 0), ["[2, 3]", "[4, 3]"], "where broadcast");
  expectError(ShapeError, () => where(c, 0, a), ["[2, 3]", "[4, 3]"], "where broadcast b");
  expectError(DTypeError, () => where(c, c, h), ["float32", "float16"], "where dtypes");
  expectError(ArgumentError, () => where(c, "x" as never, 1), ["a must be", "string"], "where a");
  expectError(ArgumentError, () => where(1 as never, c, c), ["cond must be"], "where cond");
  const other = tensor([1, 2, 3], { backend: twinOf(backend) });
  expectError(BackendMismatchError, () => where(c, other, 0), [backend.name], "where backends");
  const gone = randn([2, 3], { seed: 4, backend });
  gone.dispose();
  expectError(DisposedTensorError, () => where(c, gone, 0), ["dispose"], "where disposed");
  other.dispose();
  ok(backend.memory().liveCount === before, "a failed where leaked storage");
  for (const t of [c, a, h]) t.dispose();
});

describeBackends(
  "ops: a failed call leaves its inputs intact and leaks nothing",
  async (backend) => {
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
  },
);
