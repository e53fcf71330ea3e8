/**
 * Where creation functions put a tensor when no `backend` is given. tensor/ cannot know the
 * backends (they sit above it), so the choice is registered from above: the CPU backend
 * registers itself as the fallback when its module loads, and the top-level `defaults.ts`
 * (`setBackend`, `defaultBackend`) sets the chosen one.
 *
 * @module
 */
import { ArgumentError } from "./errors.ts";
import type { TensorBackend } from "./storage.ts";

let chosen: TensorBackend | null = null;
let fallback: (() => TensorBackend) | null = null;

/** The backend for a creation call without `backend`: the chosen one, else the fallback. */
export function defaultTensorBackend(): TensorBackend {
  const b = chosen ?? fallback?.();
  if (!b) {
    throw new ArgumentError(
      "no default backend: pass { backend } or import mod.ts (which registers the CPU backend)",
    );
  }
  return b;
}

/** Sets the backend creation functions use by default (`null`: back to the fallback). */
export function chooseTensorBackend(b: TensorBackend | null): void {
  chosen = b;
}

/** Registers the backend used while none was chosen (the CPU backend registers itself). */
export function setFallbackTensorBackend(make: () => TensorBackend): void {
  fallback = make;
}
