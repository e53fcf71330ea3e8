/**
 * The process-wide default backend used by creation functions when none is given.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { cpu } from "./cpu/cpu_backend.ts";

let current: Backend | null = null;

/** The backend creation functions use when no `backend` option is given (initially CPU). */
export function getBackend(): Backend {
  return current ?? cpu();
}

/** Sets the default backend for creation functions. */
export function setBackend(backend: Backend): void {
  current = backend;
}
