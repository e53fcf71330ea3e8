/**
 * The scale buffers a launch over quantized K/V binds last (`_wgsl_quant.ts`): K's then V's,
 * one each for whole K/V, one per page buffer each for paged K/V — checked against the plan
 * before anything is recorded, so a wrong argument is a named error, never a GPU validation
 * error.
 *
 * @module
 */
import type { AttentionInputs, TensorInfo } from "../../backend.ts";
import type { PagedLayout } from "../../../schedule/attention_plan.ts";
import { ArgumentError, DTypeError, ShapeError } from "../../../tensor/errors.ts";
import type { GpuContext } from "../context.ts";
import { checkBinding } from "./_launch_limits.ts";

function checkScale(ctx: GpuContext, name: string, t: TensorInfo, want: readonly number[]): void {
  if (t.shape.length !== want.length || t.shape.some((n, i) => n !== want[i])) {
    throw new ShapeError(
      `attention: ${name} must be [${want.join(", ")}], got [${t.shape.join(", ")}]`,
    );
  }
  if (t.dtype !== "float32") {
    throw new DTypeError(`attention: ${name} must be float32, got ${t.dtype}`);
  }
  checkBinding(ctx, name, ctx.byteLength(t.id));
}

/**
 * The scale bindings of a launch with scale granularity `scales` (null: float K/V, nothing)
 * over K/V of shape `[B, Hkv, N, D]`, paged by `layout` or not. Throws {@link ArgumentError},
 * {@link ShapeError}, {@link DTypeError} or {@link LimitError} on inputs that do not match.
 */
export function quantInputs(
  ctx: GpuContext,
  scales: "token" | "head" | null,
  layout: PagedLayout | null,
  kvShape: readonly number[],
  inputs: AttentionInputs,
): GPUBuffer[] {
  const pages = inputs.pages;
  const given = inputs.kScale || inputs.vScale || pages?.kScalePages || pages?.vScalePages;
  if (!scales) {
    if (given) throw new ArgumentError("attention: scales were given for float K/V");
    return [];
  }
  const [B, Hkv, N] = kvShape;
  if (!layout) {
    const want = scales === "token" ? [B, Hkv, N] : [B, Hkv];
    const out: GPUBuffer[] = [];
    for (const [name, t] of [["kScale", inputs.kScale], ["vScale", inputs.vScale]] as const) {
      if (!t) {
        throw new ArgumentError(
          `attention: the plan reads quantized K/V, but no ${name} was given`,
        );
      }
      checkScale(ctx, name, t, want);
      out.push(ctx.buffer(t.id));
    }
    return out;
  }
  const { pageSize, pagesPerBuffer, buffers, pages: P } = layout;
  const lists = [["kScalePages", pages?.kScalePages], ["vScalePages", pages?.vScalePages]] as const;
  const out: GPUBuffer[] = [];
  for (const [name, list] of lists) {
    if (!list) {
      throw new ArgumentError(
        `attention: the plan reads quantized pages, but no ${name} were given`,
      );
    }
    if (list.length !== buffers) {
      throw new ShapeError(
        `attention: ${name} has ${list.length} buffers, the plan's layout ${buffers} page buffers`,
      );
    }
    list.forEach((t, c) => {
      const pc = c < buffers - 1 ? pagesPerBuffer : P - (buffers - 1) * pagesPerBuffer;
      checkScale(ctx, `${name}[${c}]`, t, [pc, Hkv, pageSize]);
      out.push(ctx.buffer(t.id));
    });
  }
  return out;
}
