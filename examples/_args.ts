/**
 * The examples' command line: `--name value` flags and `--gpu` for the default backend (WebGPU
 * where an adapter exists) instead of the CPU.
 *
 * @module
 */
import * as la from "../mod.ts";

/** The value after `--name`, or `fallback`. */
export function flag(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : fallback;
}

/** The backend the example runs on: `--gpu` picks the default backend, else the CPU. */
export function exampleBackend(): Promise<la.Backend> | la.Backend {
  return Deno.args.includes("--gpu") ? la.defaultBackend() : la.cpu();
}
