/**
 * The scale buffers a launch over quantized K/V binds last (`_wgsl_quant.ts`): K's then V's,
 * one each for whole K/V, one per page buffer each for paged K/V — checked against the plan
 * before anything is recorded, so a wrong argument is a named error, never a GPU validation
 * error. K/V stored in parts run one launch per part, each binding its part of the token
 * scales ({@link partScaleInputs}).
 *
 * @module
 */
import type { AttentionInputs, StoragePart, TensorInfo } from "../../backend.ts";
import type { AttentionPlan, PagedLayout } from "../../../schedule/attention_plan.ts";
import { ArgumentError, DTypeError, LimitError, ShapeError } from "../../../tensor/errors.ts";
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

/**
 * The inputs of the run over part `c` of K/V stored in parts (`plan.parts`): "token" scales
 * `[B, Hkv, N]` bound part by part, which needs them stored cut where the data is (as
 * `la.quantize` stores them: part c `[B, Hkv, n1 − n0]`); "head" scales `[B, Hkv]` whole for
 * every part. Without parts or token scales, `inputs` for every run. Throws
 * {@link LimitError} for token scales stored otherwise (a scale tensor the caller made).
 */
export function partScaleInputs(
  storageParts: (t: TensorInfo) => readonly StoragePart[] | null,
  plan: AttentionPlan,
  inputs: AttentionInputs,
): (c: number | undefined) => AttentionInputs {
  const parts = plan.parts;
  const { kScale, vScale } = inputs;
  if (!parts || plan.kvScales !== "token" || !kScale || !vScale || kScale.shape.length !== 3) {
    return () => inputs;
  }
  const slices = [["kScale", kScale], ["vScale", vScale]].map(([name, t]) => {
    const s = t as TensorInfo;
    let got: readonly StoragePart[] | null | undefined;
    try {
      got = storageParts({ ...s, shape: [...s.shape, 1] });
    } catch (e) {
      if (!(e instanceof LimitError)) throw e;
      got = undefined; // in parts along another axis (an upload of [B, Hkv, N])
    }
    const same = got && got.length === parts.length &&
      got.every((p, c) => p.n0 === parts[c].n0 && p.n1 === parts[c].n1);
    if (!same) {
      throw new LimitError(
        `attention: K/V are stored in ${parts.length} parts along N (over one buffer binding), ` +
          `so their token scales must be stored in the same parts, as la.quantize stores them; ` +
          `${name} [${s.shape.join(", ")}] is ${
            got === undefined
              ? "stored in parts along Hkv"
              : got
              ? `cut at keys [${got.map((p) => p.n0).join(", ")}]`
              : "stored whole"
          }`,
      );
    }
    return got!.map((p): TensorInfo => ({
      id: p.id,
      shape: [s.shape[0], s.shape[1], p.n1 - p.n0],
      dtype: s.dtype,
    }));
  });
  return (c) =>
    c === undefined ? inputs : { ...inputs, kScale: slices[0][c], vScale: slices[1][c] };
}
