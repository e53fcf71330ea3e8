/**
 * The size check the schedule builders run before building anything: a schedule holds an
 * object per unit and a run per worker, so an absurd count must fail as a named error, not
 * exhaust the heap ("Fatal JavaScript out of memory" kills the process; no catch helps).
 *
 * @module
 */
import { ArgumentError, LimitError, show } from "../tensor/errors.ts";
import { MAX_WORKERS } from "./limits.ts";

/**
 * Most units (batch × kvHeads × qBlocks) a schedule may have: each is an object of the
 * schedule, and 2²⁴ of them already take over a GiB of heap.
 */
export const MAX_UNITS = 1 << 24;

function positive(op: string, name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw new ArgumentError(`${op}: ${name}: expected a positive integer, got ${show(v)}`);
  }
  return v;
}

/**
 * Checks the plan's unit count and the worker count `count` (`grid`, or `numSplits` per
 * unit) against {@link MAX_UNITS} and `MAX_WORKERS`, before anything is allocated. `perUnit`
 * is 0 for lean (`count` workers in all) and 1 for split (`count` workers a unit; one split
 * is one worker a unit, which only `MAX_UNITS` bounds, as in `flashAttention`). Returns
 * `count`.
 */
export function checkScheduleSize(
  op: string,
  plan: unknown,
  name: "grid" | "numSplits",
  count: unknown,
  perUnit: 0 | 1,
): number {
  if (typeof plan !== "object" || plan === null) {
    throw new ArgumentError(`${op}: expected a plan object, got ${show(plan)}`);
  }
  const p = plan as Record<string, unknown>;
  const units = positive(op, "batch", p.batch) * positive(op, "kvHeads", p.kvHeads) *
    positive(op, "qBlocks", p.qBlocks ?? 1);
  const n = positive(op, name, count);
  if (units > MAX_UNITS) {
    throw new LimitError(
      `${op}: batch × kvHeads × qBlocks = ${units} units, more than the ${MAX_UNITS} a ` +
        `schedule may hold`,
    );
  }
  const workers = perUnit ? units * n : n;
  if (workers > MAX_WORKERS && (perUnit === 0 || n > 1)) {
    throw new LimitError(
      `${op}: ${name} ${n}${perUnit ? ` × ${units} units` : ""} would make ${workers} ` +
        `workers, more than the ${MAX_WORKERS} a schedule may have`,
    );
  }
  return n;
}
