/**
 * The geometry of one attention call as every executor sees it: the sizes from the shapes of
 * q and k, and the rows of one schedule unit (a GQA group's query heads × the rows of one
 * query block). Pure; shared by the CPU and WebGPU backends so both read the schedule alike.
 *
 * @module
 */
import type { LeanSchedule } from "./lean_schedule.ts";

/** Geometry of one attention call, resolved from the shapes and the schedule. */
export interface AttentionGeometry {
  /** Batch. */
  B: number;
  /** Query heads. */
  Hq: number;
  /** KV heads. */
  Hkv: number;
  /** Query rows. */
  Sq: number;
  /** Stored keys per (batch, kv head). */
  N: number;
  /** Head dimension. */
  D: number;
  /** Query heads per kv head. */
  group: number;
  /** Query rows per query block: `ceil(Sq / qBlocks)`. */
  rowsPerBlock: number;
  /** State rows of one unit: `group · rowsPerBlock`. */
  unitRows: number;
}

/** Shapes of q `[B, Hq, Sq, D]` and k `[B, Hkv, N, D]` plus the schedule → geometry. */
export function attentionGeometry(
  qShape: readonly number[],
  kShape: readonly number[],
  schedule: LeanSchedule,
): AttentionGeometry {
  const [B, Hq, Sq, D] = qShape;
  const [, Hkv, N] = kShape;
  const group = Hq / Hkv;
  const rowsPerBlock = Math.ceil(Sq / schedule.plan.qBlocks);
  return {
    B,
    Hq,
    Hkv,
    Sq,
    N,
    D,
    group,
    rowsPerBlock,
    unitRows: unitRowsOf(Sq, group, schedule.plan.qBlocks),
  };
}

/** State rows of one unit: the GQA group's query heads × the rows of one query block. */
export function unitRowsOf(Sq: number, group: number, qBlocks: number): number {
  return group * Math.ceil(Sq / qBlocks);
}
