/**
 * The geometry an attention launch is planned from: the problem's sizes plus what the
 * schedule makes of them (workers, cuts, keys a worker streams).
 *
 * @module
 */
import type { AttentionParams } from "../../backend.ts";
import type { Shape } from "../../../tensor/shape.ts";
import { type AttentionGeometry, attentionGeometry } from "../../../schedule/geometry.ts";

/** A call's sizes with what its schedule makes of them. */
export interface Geometry extends AttentionGeometry {
  /** Visible keys (summed over units) per lean worker: the work a workgroup streams. */
  keysPerWorker: number;
  /** Workers (workgroups) of the schedule. */
  workers: number;
  /** Units the schedule cuts into pieces (merged in the kernel or by the reduce pass). */
  cuts: number;
}

/** The launch geometry of a call with q of `qShape` and K/V of `kShape`. */
export function launchGeometry(qShape: Shape, kShape: Shape, params: AttentionParams): Geometry {
  const s = params.schedule;
  const g: Geometry = {
    ...attentionGeometry(qShape, kShape, s),
    keysPerWorker: 0,
    workers: s.workers.length,
    cuts: s.cuts.length,
  };
  if (s.workers.length > 0) {
    // The keys the units cover (a window's units cover only what their rows can see).
    let keys = 0;
    for (const u of s.units) keys += Math.min(Math.max(u.keys, 0), g.N);
    g.keysPerWorker = keys / s.workers.length;
  }
  return g;
}
