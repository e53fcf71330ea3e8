/**
 * The E4M3 codec (tensor/float8.ts, OCP E4M3FN) and the quantized storage dtypes: every one
 * of the 256 codes round-trips, the special values, ties to even, nearest rounding; int8 and
 * float8e4m3 tensors keep their values through creation, `data()`, `to()` and `dispose()` on
 * both backends; creation refuses what the dtype cannot hold; ops refuse quantized inputs.
 */
import { equal, ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { flashAttention } from "../attention/flash.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { add } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { exp } from "../ops/unary.ts";
import { full, randn, tensor } from "../tensor/creation.ts";
import { ArgumentError, DTypeError } from "../tensor/errors.ts";
import { decodeE4M3, E4M3_MAX, E4M3_NAN, E4M3_VALUES, encodeE4M3 } from "../tensor/float8.ts";
import { backends, describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

const isNanCode = (c: number) => (c & 0x7f) === 0x7f;

Deno.test("E4M3: every code decodes and encodes back to itself", () => {
  for (let c = 0; c < 256; c++) {
    const v = decodeE4M3(c);
    if (isNanCode(c)) {
      assert(Number.isNaN(v), `code ${c} is NaN`);
      equal(encodeE4M3(v), E4M3_NAN);
      continue;
    }
    assert(Number.isFinite(v), `code ${c} is finite`);
    equal(encodeE4M3(v), c, `code ${c} (${v})`);
    equal(Object.is(v, -0), c === 0x80, `code ${c}: only 0x80 is −0`);
    equal(E4M3_VALUES[c], Math.fround(v));
  }
});

Deno.test("E4M3: special values of the OCP E4M3FN format", () => {
  equal(decodeE4M3(0x7e), 448);
  equal(decodeE4M3(0xfe), -448);
  equal(decodeE4M3(0x01), 2 ** -9); // smallest subnormal
  equal(decodeE4M3(0x07), 7 * 2 ** -9); // largest subnormal
  equal(decodeE4M3(0x08), 2 ** -6); // smallest normal
  equal(decodeE4M3(0x38), 1); // exponent field 7 = bias
  equal(decodeE4M3(0x77), 240); // exponent 15 holds finite values besides NaN
  assert(Number.isNaN(decodeE4M3(0x7f)) && Number.isNaN(decodeE4M3(0xff)));
  equal(encodeE4M3(E4M3_MAX), 0x7e);
  equal(encodeE4M3(-0), 0x80);
  equal(encodeE4M3(NaN), E4M3_NAN);
  // No infinities: beyond 448 saturates (creation refuses such values before encoding).
  equal(encodeE4M3(449), 0x7e);
  equal(encodeE4M3(Infinity), 0x7e);
  equal(encodeE4M3(-Infinity), 0xfe);
  equal(encodeE4M3(2 ** -11), 0); // below half the smallest subnormal
});

Deno.test("E4M3: a midpoint between neighbours rounds to the even code", () => {
  const finite = [...Array(0x7f).keys()]; // 0x00..0x7e, the positive finite codes
  for (const c of finite.slice(0, -1)) {
    const lo = decodeE4M3(c);
    const hi = decodeE4M3(c + 1);
    const mid = (lo + hi) / 2;
    equal(Math.fround(mid), mid, "midpoints are float32 values");
    const even = c % 2 === 0 ? c : c + 1;
    equal(encodeE4M3(mid), even, `midpoint of ${lo} and ${hi}`);
    equal(encodeE4M3(-mid), even | 0x80, `midpoint of ${-lo} and ${-hi}`);
    const ulp = (hi - lo) / 64;
    equal(encodeE4M3(mid - ulp), c, `just below the midpoint of ${lo} and ${hi}`);
    equal(encodeE4M3(mid + ulp), c + 1, `just above the midpoint of ${lo} and ${hi}`);
  }
});

Deno.test("E4M3: encoding picks the nearest representable value", () => {
  const finiteValues = [...E4M3_VALUES].filter(Number.isFinite);
  fc.assert(
    fc.property(fc.float({ min: -448, max: 448, noNaN: true }), (x) => {
      const got = decodeE4M3(encodeE4M3(x));
      const best = Math.min(...finiteValues.map((v) => Math.abs(v - x)));
      return Math.abs(got - x) === best;
    }),
    { numRuns: 2000 },
  );
});

describeBackends("int8 and float8e4m3 tensors store their values exactly", async (backend) => {
  const int8s = Array.from({ length: 256 }, (_, i) => i - 128);
  const t8 = tensor(int8s, { dtype: "int8", backend });
  equal(t8.dtype, "int8");
  assert((await t8.data()).every((v, i) => v === int8s[i]), "int8 values -128..127");
  const codes = [...E4M3_VALUES];
  const tf = tensor(codes, { dtype: "float8e4m3", backend, shape: [16, 16] });
  const got = await tf.data();
  for (let c = 0; c < 256; c++) {
    assert(Object.is(got[c], E4M3_VALUES[c]), `code ${c}: got ${got[c]}`);
  }
  // to(): to another backend and back keeps dtype and values.
  for (const other of await backends()) {
    const moved = await tf.to(other);
    equal(moved.dtype, "float8e4m3");
    const back = await moved.data();
    assert(back.every((v, i) => Object.is(v, got[i])), `to(${other.name})`);
    moved.dispose();
  }
  t8.dispose();
  tf.dispose();
});

describeBackends("creating quantized tensors rounds to nearest, ties to even", async (backend) => {
  const i8 = tensor([2.5, 3.5, -2.5, 0.49, -127.6, 127.4], { dtype: "int8", backend });
  equal(String(await i8.data()), String([2, 4, -2, 0, -128, 127]));
  const f8 = tensor([1.0625, 1.1875, 300, 1e-4, NaN], { dtype: "float8e4m3", backend });
  const v = await f8.data();
  equal(String(v.slice(0, 4)), String([1, 1.25, 288, 0]));
  assert(Number.isNaN(v[4]), "NaN stays NaN in float8e4m3");
  const ones = full([3], -7, { dtype: "int8", backend });
  equal(String(await ones.data()), "-7,-7,-7");
  // randn into a storage dtype: values on the grid.
  const r = await randn([64], { seed: 3, dtype: "float8e4m3", backend }).data();
  assert(r.every((x) => E4M3_VALUES.includes(x)), "randn values are E4M3 values");
});

describeBackends("creation refuses values a quantized dtype cannot hold", (backend) => {
  for (const [x, dtype] of [[128, "int8"], [-129, "int8"], [127.5, "int8"]] as const) {
    expectError(ArgumentError, () => tensor([0, x], { dtype, backend }), [
      String(x),
      "[1]",
      dtype,
    ], `${x} as ${dtype}`);
  }
  expectError(ArgumentError, () => tensor([NaN], { dtype: "int8", backend }), ["NaN"], "NaN");
  expectError(ArgumentError, () => tensor([Infinity], { dtype: "int8", backend }), [
    "Infinity",
  ], "∞ int8");
  for (const x of [449, -1000, Infinity, -Infinity]) {
    expectError(ArgumentError, () => tensor([x], { dtype: "float8e4m3", backend }), [
      String(x),
      "float8e4m3",
    ], `${x} as float8e4m3`);
  }
  expectError(ArgumentError, () => full([2], 300, { dtype: "int8", backend }), ["300"], "full");
  expectError(DTypeError, () => tensor([1], { dtype: "int4" as "int8", backend }), [
    '"int4"',
    '"float8e4m3"',
  ], "unknown dtype");
});

describeBackends("ops, cast, attention and merge refuse quantized tensors", (backend) => {
  const q8 = tensor([1, 2, 3, 4], { dtype: "int8", backend, shape: [1, 1, 1, 4] });
  const f = randn([1, 1, 1, 4], { seed: 1, backend });
  const hint = ["int8", "la.dequantize first"];
  expectError(DTypeError, () => exp(q8), hint, "exp");
  expectError(DTypeError, () => add(f, q8), hint, "add");
  expectError(DTypeError, () => cast(q8, "float32"), hint, "cast from int8");
  expectError(DTypeError, () => cast(f, "float8e4m3"), ["float8e4m3"], "cast to float8e4m3");
  expectError(DTypeError, () => flashAttention(f, q8, q8), hint, "flash over int8 K/V");
  const lse = randn([1, 1, 1], { seed: 2, backend });
  expectError(DTypeError, () => mergeAttentionStates([{ out: q8, lse }]), hint, "merge");
});

describeBackends("memory counts one byte an element and returns after dispose", async (backend) => {
  await (await tensor([0]).to(backend)).data(); // settle lazily made state
  const before = backend.memory();
  const n = 4096;
  const t = tensor(new Float32Array(n).fill(3), { dtype: "int8", backend });
  const f = tensor(new Float32Array(n).fill(3), { dtype: "float8e4m3", backend });
  const during = backend.memory();
  equal(during.liveCount, before.liveCount + 2);
  const added = during.liveBytes - before.liveBytes;
  assert(added >= 2 * n && added < 2 * n * 2, `2 × ${n} one-byte elements took ${added} bytes`);
  equal((await f.data())[n - 1], 3);
  t.dispose();
  f.dispose();
  const after = backend.memory();
  equal(after.liveCount, before.liveCount);
  equal(after.liveBytes, before.liveBytes);
});
