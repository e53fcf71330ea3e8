/**
 * The documented rule for input a dtype cannot hold: a finite number whose conversion to the
 * target dtype would overflow to ±Infinity raises an ArgumentError naming the value, its index
 * and the dtype's range, before any storage is allocated; ±Infinity and NaN given explicitly
 * pass through. Applies to tensor(), full/zeros/ones and fromNdarray, in float32 and float16.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { full, tensor } from "../tensor/creation.ts";
import type { ComputeDType as DType } from "../tensor/dtype.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { fromNdarray } from "../tensor/ndarray.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

// The smallest magnitudes that round to Infinity, and the largest that stay finite.
const OVER: Record<DType, number> = { float32: 3.4028235677973366e38, float16: 65520 };
const UNDER: Record<DType, number> = { float32: 3.4028235677973362e38, float16: 65519.99 };
const MAX: Record<DType, number> = { float32: 3.4028234663852886e38, float16: 65504 };

describeBackends(
  "finite input beyond a dtype's range raises, naming value and index",
  async (backend) => {
    for (const dtype of ["float32", "float16"] as DType[]) {
      const live = backend.memory().liveCount;
      const big = new Float64Array([1, 2, 3, 4, 5, 6]);
      big[4] = -1e300;
      expectError(
        ArgumentError,
        () => tensor(big, { shape: [2, 3], dtype, backend }),
        ["tensor", "-1e+300", "index [1, 1]", dtype, String(MAX[dtype]), "-Infinity"],
        `${dtype} tensor`,
      );
      expectError(
        ArgumentError,
        () => tensor([[0, OVER[dtype]]], { dtype, backend }),
        [`${OVER[dtype]}`, "index [0, 1]"],
        `${dtype} nested, just over`,
      );
      expectError(
        ArgumentError,
        () => full([2], 1e300, { dtype, backend }),
        ["full", "1e+300"],
        dtype,
      );
      const nd = {
        data: new Float64Array([0, 1, 2, 1e39]),
        shape: [2, 2],
        stride: [1, 2], // transposed: 1e39 is at [1, 1] either way; 2 is at [0, 1]
        offset: 0,
      };
      expectError(
        ArgumentError,
        () => fromNdarray(nd, { dtype, backend }),
        ["fromNdarray", "1e+39", "index [1, 1]"],
        `${dtype} fromNdarray`,
      );
      assertEquals(backend.memory().liveCount, live, `${dtype}: a refused call allocated storage`);

      // At the edge: what rounds to the largest finite value is kept; explicit ±∞ and NaN pass.
      const edge = tensor([UNDER[dtype], -UNDER[dtype], Infinity, -Infinity, NaN], {
        dtype,
        backend,
      });
      const got = await edge.data();
      assertEquals([...got.slice(0, 4)], [MAX[dtype], -MAX[dtype], Infinity, -Infinity]);
      assert(Number.isNaN(got[4]));
      const inf = full([2], -Infinity, { dtype, backend });
      assertEquals([...(await inf.data())], [-Infinity, -Infinity]);
      edge.dispose();
      inf.dispose();
    }
  },
);
