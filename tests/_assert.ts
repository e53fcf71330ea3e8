/**
 * Assertions shared by the specs: named library errors, a backend seen as another one, IEEE
 * equality and NumPy broadcasting indices.
 */
import { ok as assert, throws } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { LeanattnError } from "../tensor/errors.ts";

/** A library error class (every one extends {@link LeanattnError}). */
export type ErrorClass = new (...args: never[]) => LeanattnError;

/**
 * Asserts `f` throws exactly `cls` (a {@link LeanattnError} whose `name` is the class name)
 * with every string of `mentions` in its message.
 */
export function expectError(
  cls: ErrorClass,
  f: () => unknown,
  mentions: string[],
  what: string,
): void {
  throws(f, (e: unknown) => {
    assert(e instanceof cls, `${what}: expected ${cls.name}, got ${e}`);
    assert(e instanceof LeanattnError, `${what}: ${cls.name} must extend LeanattnError`);
    assert((e as Error).name === cls.name, `${what}: error name ${(e as Error).name}`);
    for (const m of mentions) {
      assert(
        (e as Error).message.includes(m),
        `${what}: message "${(e as Error).message}" lacks "${m}"`,
      );
    }
    return true;
  }, what);
}

/** The same backend seen as a different one (`<name>-twin`): its tensors must not mix. */
export function twinOf(backend: Backend): Backend {
  return new Proxy(backend, {
    get(t, p) {
      if (p === "name") return `${t.name}-twin`;
      const v = Reflect.get(t, p, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

/** Equal as IEEE values: NaN matches NaN, ±∞ match exactly, finite within `tol`. */
export function sameIeee(got: number, want: number, tol = 0): boolean {
  if (Number.isNaN(want)) return Number.isNaN(got);
  if (!Number.isFinite(want)) return got === want;
  return Number.isFinite(got) && Math.abs(got - want) <= tol;
}

/** Index into `shape` of the element of `out` at flat index `o` (NumPy broadcasting). */
export function broadcastIndex(
  shape: readonly number[],
  out: readonly number[],
  o: number,
): number {
  let idx = 0;
  let stride = 1;
  let rem = o;
  for (let d = out.length - 1; d >= 0; d--) {
    const c = rem % out[d];
    rem = Math.floor(rem / out[d]);
    const i = d - (out.length - shape.length);
    if (i >= 0) {
      if (shape[i] !== 1) idx += c * stride;
      stride *= shape[i];
    }
  }
  return idx;
}
