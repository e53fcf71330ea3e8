/**
 * Options read once at the API boundary: each known option is read exactly once into a plain
 * object (so a getter or proxy cannot answer validation and the kernel differently), and an
 * unknown name is an error — a misspelt `kvLen` must not silently compute something else.
 *
 * @module
 */
import { ArgumentError, show } from "./errors.ts";

/**
 * A plain copy of `opts` (own enumerable string keys, each read once). Throws
 * {@link ArgumentError} when `opts` is not an object or names an option not in `known`.
 */
export function readOptions<T extends object>(
  op: string,
  opts: unknown,
  known: readonly string[],
): Partial<T> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
    throw new ArgumentError(`${op}: options must be an object, got ${show(opts)}`);
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) {
      const near = nearest(key, known);
      throw new ArgumentError(
        `${op}: unknown option ${JSON.stringify(key)}${
          near ? ` (did you mean ${JSON.stringify(near)}?)` : ""
        }; valid options: ${known.join(", ")}`,
      );
    }
    out[key] = (opts as Record<string, unknown>)[key];
  }
  return out as Partial<T>;
}

/** The known name closest to `key` (edit distance ≤ 2, or the same letters any case). */
function nearest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : distance(key, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

/** Levenshtein distance (short option names only: O(|a|·|b|)). */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 64) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
