/**
 * How a Tensor shows itself in `deno jupyter`: a MIME bundle (text/plain and text/html) with
 * its shape, dtype, backend and a NumPy-style preview (at most 3 leading and 3 trailing entries
 * per dimension). Kept out of tensor.ts, which only forwards its display hook here.
 *
 * @module
 */
import type { Shape } from "./shape.ts";
import { fmt, sizeOf } from "./shape.ts";

/** The key Deno's Jupyter kernel looks for: a method returning a MIME bundle. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display") as never;

/** Largest tensor whose values a preview reads (a larger one shows its header only). */
export const PREVIEW_MAX_ELEMENTS = 1 << 24;
const EDGE = 3;

/** What the display hook needs of a tensor. */
export interface Displayable {
  shape: Shape;
  dtype: string;
  backend: { name: string };
  isDisposed: boolean;
  data(): Promise<Float32Array>;
}

/** The MIME bundle Deno's Jupyter kernel renders for `t`. */
export async function tensorBundle(t: Displayable): Promise<Record<string, string>> {
  const head = `Tensor ${fmt(t.shape)} ${t.dtype} on ${t.backend.name}`;
  let body: string;
  if (t.isDisposed) body = "(disposed)";
  else if (sizeOf(t.shape) > PREVIEW_MAX_ELEMENTS) body = "(large: call await t.data())";
  else body = preview(await t.data(), t.shape);
  return {
    "text/plain": `${head}\n${body}`,
    "text/html": `<div><b>${escape(head)}</b><pre>${escape(body)}</pre></div>`,
  };
}

/** Nested brackets like NumPy's repr, eliding the middle of long dimensions with "...". */
export function preview(values: Float32Array, shape: Shape): string {
  if (shape.length === 0) return num(values[0]);
  const strides = shape.map((_, d) => sizeOf(shape.slice(d + 1)));
  const go = (offset: number, dim: number, indent: string): string => {
    const n = shape[dim];
    const idx = n > 2 * EDGE
      ? [...Array(EDGE).keys(), -1, ...Array.from({ length: EDGE }, (_, i) => n - EDGE + i)]
      : [...Array(n).keys()];
    if (dim === shape.length - 1) {
      return `[${idx.map((i) => (i < 0 ? "..." : num(values[offset + i]))).join(", ")}]`;
    }
    const inner = idx.map((i) =>
      i < 0 ? "..." : go(offset + i * strides[dim], dim + 1, indent + " ")
    );
    return `[${inner.join(`,\n${indent} `)}]`;
  };
  return go(0, 0, "");
}

function num(x: number): string {
  if (Number.isInteger(x) && Math.abs(x) < 1e6) return String(x);
  return Number.isFinite(x) ? x.toPrecision(4) : String(x);
}

function escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
