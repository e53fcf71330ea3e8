/**
 * Bad input to `mergeAttentionStates`: empty or non-array lists, states without an lse, shapes
 * and dtypes that disagree, rank 0, another backend, disposed tensors. Each throws its named
 * error with expected vs given in the message and allocates nothing. Random garbage:
 * tests/fuzz_test.ts.
 */
import { ok as assert } from "node:assert/strict";
import { mergeAttentionStates } from "../attention/merge.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  ShapeError,
} from "../tensor/errors.ts";
import { describeBackends } from "./_backends.ts";
import { expectError, twinOf } from "./_assert.ts";

describeBackends(
  "mergeAttentionStates: bad states throw named errors and write nothing",
  (backend) => {
    const r = (shape: number[], seed: number, dtype: DType = "float32") =>
      randn(shape, { seed, dtype, backend });
    const a = { out: r([2, 3, 4], 1), lse: r([2, 3], 2) };
    const b = { out: r([2, 3, 4], 3), lse: r([2, 3], 4) };
    const wide = { out: r([2, 3, 5], 5), lse: r([2, 3], 6) };
    const lseShape = { out: r([2, 3, 4], 7), lse: r([3, 2], 8) };
    const lse16 = { out: r([2, 3, 4], 9), lse: r([2, 3], 10, "float16") };
    const out16 = { out: r([2, 3, 4], 11, "float16"), lse: r([2, 3], 12) };
    const scalar = { out: tensor(1, { backend }), lse: tensor(0, { backend }) };
    const lse24 = r([2, 4], 17);
    const twin = twinOf(backend);
    const far = { out: randn([2, 3, 4], { seed: 13, backend: twin }), lse: r([2, 3], 14) };
    const gone = { out: r([2, 3, 4], 15), lse: r([2, 3], 16) };
    gone.lse.dispose();
    const before = backend.memory().liveCount;
    const m = mergeAttentionStates;
    expectError(ArgumentError, () => m([]), ["non-empty", "empty array"], "no states");
    expectError(ArgumentError, () => m(a as never), ["non-empty array"], "not an array");
    expectError(ArgumentError, () => m([{ out: a.out } as never]), ["states[0]"], "no lse (0)");
    expectError(ArgumentError, () => m([a, { out: a.out } as never]), ["states[1]"], "no lse");
    expectError(ShapeError, () => m([a, wide]), ["[2, 3, 4]", "[2, 3, 5]"], "out shapes");
    expectError(ShapeError, () => m([a, lseShape]), ["[2, 3]", "[3, 2]"], "lse shape");
    expectError(ShapeError, () => m([{ out: a.out, lse: lse24 }]), ["[2, 4]"], "lse shape (one)");
    expectError(DTypeError, () => m([a, lse16]), ["float32", "float16"], "lse dtype");
    expectError(DTypeError, () => m([a, out16]), ["float32", "float16"], "out dtypes");
    expectError(ShapeError, () => m([scalar]), ["rank", "[]"], "rank 0");
    expectError(ShapeError, () => m([{ out: scalar.out, lse: a.lse }]), ["rank"], "rank 0 out");
    expectError(BackendMismatchError, () => m([a, far]), [`${backend.name}-twin`], "backends");
    expectError(DisposedTensorError, () => m([a, gone]), ["dispose"], "disposed");
    assert(backend.memory().liveCount === before, "a failed merge left storage behind");
    const ok = m([a, b]);
    assert(ok.out.shape.join() === "2,3,4" && ok.lse.shape.join() === "2,3");
    lse24.dispose();
    for (const s of [a, b, wide, lseShape, lse16, out16, scalar, far, gone, ok]) {
      s.out.dispose();
      s.lse.dispose();
    }
  },
);
