/**
 * The attention variants the benchmark times (`--algos lean-window4096,lean-softcap50,
 * lean-sinks,lean-alibi,lean-invariant`): lean with one variant option each (the last:
 * `batchInvariant: true`, plain attention's math), checked against the float64
 * reference row with the same math (VARIANTS.md), and their bytes — a window reads only the
 * keys it sees.
 *
 * @module
 */
import type { Case, VariantAlgo } from "./_sweep.ts";

export { VARIANT_ALGOS, type VariantAlgo } from "./_sweep.ts";

/** The variant's math for one query head, as the reference applies it. */
export interface VariantMath {
  /** Keys before the query's position a row sees (Infinity: all). */
  windowLeft: number;
  /** Soft-cap (0: none). */
  softcap: number;
  /** The head's sink logit, or null. */
  sink: number | null;
  /** The head's ALiBi slope (0: none). */
  slope: number;
}

/** Sink logits of the benchmark: one per query head, spread over [−1, 1]. */
export function sinksOf(Hq: number): number[] {
  return Array.from({ length: Hq }, (_, h) => -1 + (2 * h) / Math.max(1, Hq - 1));
}

/** ALiBi slopes as in the paper for a power-of-two head count: 2^(−8(h+1)/Hq). */
export function slopesOf(Hq: number): number[] {
  return Array.from({ length: Hq }, (_, h) => 2 ** ((-8 * (h + 1)) / Hq));
}

/** The attention options of a variant row (besides `kvLens`). */
export function variantOptions(algo: VariantAlgo, c: Case): Record<string, unknown> {
  switch (algo) {
    case "lean-window4096":
      return { window: { left: 4096 } };
    case "lean-softcap50":
      return { softcap: 50 };
    case "lean-sinks":
      return { sinks: sinksOf(c.Hq) };
    case "lean-alibi":
      return { alibiSlopes: slopesOf(c.Hq) };
    case "lean-invariant":
      return { batchInvariant: true };
  }
}

/** The math of a variant row for query head `hq`. */
export function variantMath(algo: VariantAlgo | null, c: Case, hq: number): VariantMath {
  return {
    windowLeft: algo === "lean-window4096" ? 4096 : Infinity,
    softcap: algo === "lean-softcap50" ? 50 : 0,
    sink: algo === "lean-sinks" ? sinksOf(c.Hq)[hq] : null,
    slope: algo === "lean-alibi" ? slopesOf(c.Hq)[hq] : 0,
  };
}

/** Bytes of K and V a variant row must read: a window reads only the keys its row sees. */
export function variantBytes(algo: VariantAlgo, c: Case, plainBytes: number): number {
  if (algo !== "lean-window4096") return plainBytes;
  const lens = c.kvLens ?? Array(c.B).fill(c.N);
  const keys = lens.reduce((a: number, n: number) => a + Math.min(n, 4097), 0);
  return plainBytes * keys / lens.reduce((a: number, n: number) => a + n, 0);
}
