/**
 * The lean grids `calibrateGrid` measured, per adapter (backend name and description). Its
 * own module so that `lean.ts` reads what `calibrate_grid.ts` (which runs `leanAttention`)
 * writes without the two importing each other.
 *
 * @module
 */
import type { Backend } from "../backends/backend.ts";
import { ArgumentError, show } from "../tensor/errors.ts";

const measured = new Map<string, number>();
const keyOf = (b: Backend) => {
  if (b === null || typeof b !== "object" || typeof b.name !== "string") {
    throw new ArgumentError(`expected a Backend (cpu(), await webgpu()), got ${show(b)}`);
  }
  return `${b.name}:${b.description}`;
};

/** The calibrated grid of this backend's adapter, if {@link storeCalibratedGrid} ran for it. */
export function calibratedGrid(backend: Backend): number | undefined {
  return measured.get(keyOf(backend));
}

/** Records the grid calibration chose for this backend's adapter. */
export function storeCalibratedGrid(backend: Backend, grid: number): void {
  measured.set(keyOf(backend), grid);
}
