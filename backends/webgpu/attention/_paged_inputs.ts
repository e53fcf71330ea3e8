/**
 * The buffers a paged launch binds besides its own (`_wgsl_paged.ts`): the block table, then
 * the K page buffers after the first, then the V ones — checked against the plan's layout
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

/**
 * The extra bindings of a launch over `layout` (null: contiguous, nothing), with `k`, `v` the
 * first page buffers and `[B, Hkv, , D]` the plan's K/V shape. Throws {@link ArgumentError},
 * {@link ShapeError}, {@link DTypeError} or {@link LimitError} on inputs that do not match.
 */
export function pagedInputs(
  ctx: GpuContext,
  layout: PagedLayout | null,
  kvShape: readonly number[],
  k: TensorInfo,
  v: TensorInfo,
  inputs: AttentionInputs,
): GPUBuffer[] {
  const pages = inputs.pages;
  if (!layout) {
    if (pages) throw new ArgumentError("attention: pages were given to a plan over contiguous K/V");
    return [];
  }
  if (!pages) {
    throw new ArgumentError("attention: the plan reads paged K/V, but no pages were given");
  }
  const { pageSize, pagesPerBuffer, buffers, pages: P, maxBlocks } = layout;
  const [B, Hkv, , D] = kvShape;
  for (
    const [name, list, first] of [["kPages", pages.kPages, k], ["vPages", pages.vPages, v]] as const
  ) {
    if (list.length !== buffers) {
      throw new ShapeError(
        `attention: ${name} has ${list.length} page buffers, the plan's layout ${buffers}`,
      );
    }
    if (list[0].id !== first.id) {
      throw new ArgumentError(
        `attention: with paged K/V the ${
          name === "kPages" ? "k" : "v"
        } argument must be ${name}[0]`,
      );
    }
    list.forEach((t, c) => {
      const pc = c < buffers - 1 ? pagesPerBuffer : P - (buffers - 1) * pagesPerBuffer;
      const want = [pc, Hkv, pageSize, D];
      if (t.shape.length !== 4 || t.shape.some((n, i) => n !== want[i])) {
        throw new ShapeError(
          `attention: ${name}[${c}] must be [${want.join(", ")}] ([pages, Hkv, pageSize, D] ` +
            `of the plan's layout), got [${t.shape.join(", ")}]`,
        );
      }
      if (t.dtype !== k.dtype) {
        throw new DTypeError(
          `attention: ${name}[${c}] is ${t.dtype}, the page buffers' dtype is ${k.dtype}`,
        );
      }
      checkBinding(ctx, `${name}[${c}]`, ctx.byteLength(t.id));
    });
  }
  const tableBytes = B * maxBlocks * 4;
  if (ctx.byteLength(pages.blockTable) < tableBytes) {
    throw new ShapeError(
      `attention: the block table holds ${ctx.byteLength(pages.blockTable) / 4} entries, the ` +
        `layout needs B · maxBlocks = ${B} · ${maxBlocks}`,
    );
  }
  checkBinding(ctx, "the block table", ctx.byteLength(pages.blockTable));
  return [
    ctx.buffer(pages.blockTable),
    ...pages.kPages.slice(1).map((t) => ctx.buffer(t.id)),
    ...pages.vPages.slice(1).map((t) => ctx.buffer(t.id)),
  ];
}
