/**
 * Bad input to tensor creation and views: sizes that do not match the shape, ragged nesting,
 * negative dimensions, unknown dtypes, a reshape to another size, something that is not an
 * ndarray. Each throws its named error naming what was given.
 */
import { ArgumentError, DTypeError, ShapeError } from "../tensor/errors.ts";
import { randn, tensor, zeros } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { fromNdarray, type NdArrayLike } from "../tensor/ndarray.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

describeBackends(
  "creation: bad sizes, shapes, dtypes and sources throw named errors",
  (backend) => {
    const a = randn([2, 3], { seed: 1, backend });
    expectError(ShapeError, () => a.reshape([4, 2]), ["[2, 3]", "[4, 2]"], "reshape size");
    expectError(
      ShapeError,
      () => tensor([1, 2, 3], { shape: [2, 2], backend }),
      ["[2, 2]", "3"],
      "tensor size",
    );
    expectError(ShapeError, () => tensor([[1, 2], [3]], { backend }), ["ragged"], "ragged nested");
    expectError(ShapeError, () => zeros([2, -1], { backend }), ["-1"], "negative dim");
    expectError(
      DTypeError,
      () => tensor([1], { dtype: "float64" as DType, backend }),
      ["float64"],
      "tensor dtype",
    );
    expectError(
      ArgumentError,
      () => fromNdarray({ shape: [2] } as unknown as NdArrayLike),
      ["ndarray"],
      "fromNdarray non-ndarray",
    );
    a.dispose();
  },
);
