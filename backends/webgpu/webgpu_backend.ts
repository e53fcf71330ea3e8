/**
 * The WebGPU backend: tensors live in pooled GPU buffers, ops record compute passes into one
 * pending command encoder (submitted on readback, on `flush()` or every 64 dispatches), and
 * only reads wait. Optional features (`shader-f16`, `timestamp-query`, `subgroups`) and raised
 * limits are requested only where the adapter has them.
 *
 * @module
 */
import { isSoftwareAdapter, parallelismOf } from "./_gpus.ts";
import type {
  AttentionInputs,
  AttentionPlan,
  AttentionRun,
  Backend,
  BinaryOp,
  DataId,
  LeanGridProblem,
  MemoryInfo,
  ReduceOp,
  TensorInfo,
  UnaryOp,
} from "../backend.ts";
import type { DType, QuantDType } from "../../tensor/dtype.ts";
import { dequantizeKernel, quantizeKernel } from "./_quantize.ts";
import type { Shape } from "../../tensor/shape.ts";
import { ArgumentError, BackendUnavailableError, LimitError, show } from "../../tensor/errors.ts";
import type { GpuContext, GpuFeatures } from "./context.ts";
import { GpuRuntime, type PassTiming } from "./_runtime.ts";
import {
  binaryKernel,
  reduceKernel,
  softmaxKernel,
  transposeKernel,
  unaryKernel,
  whereKernel,
} from "./_kernels.ts";
import { matmulKernel } from "./_matmul.ts";
import { ropeKernel } from "./_rope.ts";
import { createIndexTable, gatherPageRows, scatterPageRows } from "./_paged.ts";
import { readOptions } from "../../tensor/options.ts";
import type { PieceRule } from "../../schedule/limits.ts";
import { attentionInParts, kernelRun } from "../attention_parts.ts";
import { partScaleInputs } from "./attention/_quant_inputs.ts";
import {
  type AttentionTuning,
  checkTuning,
  defaultGrid as attentionGrid,
  invariantPieceFor,
  leanGridFor,
  planWebgpuAttention,
  runWebgpuAttention,
  type WebGpuAttentionLaunch,
  webgpuMergeStates,
} from "./attention/mod.ts";

/** What {@link WebGpuBackend.prepareAttention} keeps in a plan's run. */
interface PreparedRun {
  /** The tuning it was planned under (`attentionTuning`: frozen, replaced on every set). */
  readonly tuning: AttentionTuning;
  /** The launch. */
  readonly launch: WebGpuAttentionLaunch;
}

export type { PassTiming } from "./_runtime.ts";

/** Options of {@link webgpu}. */
export interface WebGpuOptions {
  /** Adapter preference (default `"high-performance"`). */
  powerPreference?: GPUPowerPreference;
  /** Limits to request, overriding the raised defaults; each must not exceed the adapter's. */
  requiredLimits?: Partial<Record<string, number>>;
  /** Keep WebGPU's default limits instead of raising them to the adapter's (for tests). */
  defaultLimits?: boolean;
  /** Optional features not to request even where available (to test fallback paths). */
  disableFeatures?: readonly ("shader-f16" | "timestamp-query" | "subgroups")[];
  /**
   * Tensors over this many bytes are stored across several buffers (default and upper bound:
   * `maxStorageBufferBindingSize`), each part a range of the second-to-last axis. A smaller
   * value exercises the parts path on small data, for tests; ops other than attention then
   * refuse tensors over it.
   */
  partBytes?: number;
  /** @deprecated Renamed {@link WebGpuOptions.partBytes} ("split" now means FlashDecoding's cut only); removed in 0.3. */
  splitBytes?: number;
}

const WEBGPU_OPTIONS = [
  "powerPreference",
  "requiredLimits",
  "defaultLimits",
  "disableFeatures",
  "partBytes",
  "splitBytes",
];

/** Limits raised to what the adapter offers unless `defaultLimits` is set. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
] as const;

export { parallelismOf };

/** A backend running on one WebGPU device. Create it with {@link webgpu}. */
export class WebGpuBackend implements Backend {
  /** Always `"webgpu"`. */
  readonly name = "webgpu";
  /** Adapter vendor, architecture, device and description. */
  readonly description: string;
  /** Multiprocessor count (a table of known GPUs; 8 for software adapters, else 32). */
  readonly parallelism: number;
  /** Whether float16 tensors are stored as halves (`shader-f16` granted). */
  readonly nativeF16: boolean;
  /** Granted optional features. */
  readonly features: GpuFeatures;
  /** Granted limits. */
  readonly limits: GPUSupportedLimits;
  /** What kernel files use: device, pooled storage, pipelines, dispatch. */
  readonly ctx: GpuContext;
  readonly #rt: GpuRuntime;

  /** @internal Use {@link webgpu}. */
  constructor(
    device: GPUDevice,
    features: GpuFeatures,
    description: string,
    partBytes?: number,
  ) {
    this.#rt = new GpuRuntime(device, features, description, partBytes);
    this.ctx = this.#rt;
    this.description = description;
    this.features = features;
    this.limits = device.limits;
    this.nativeF16 = features.f16;
    this.parallelism = parallelismOf(description).parallelism;
  }

  /**
   * Kernel knobs for every attention call on this backend (benchmarks compare variants;
   * empty = the defaults). Results do not depend on them beyond rounding, except where a
   * knob says so.
   */
  get attentionTuning(): AttentionTuning {
    return this.#tuning;
  }
  /** Validated when set: an unknown knob or one out of its range is an `ArgumentError`. */
  set attentionTuning(t: AttentionTuning) {
    this.#tuning = checkTuning(t, this.limits.maxComputeInvocationsPerWorkgroup);
  }
  #tuning: AttentionTuning = Object.freeze({});

  /** Whether {@link WebGpuBackend.readTimings} reports device timestamps (`timestamp-query`). */
  get timestamps(): boolean {
    return this.features.timestamps;
  }

  /**
   * True on a hardware GPU missing from the table of multiprocessor counts: its default grid
   * is a guess (software adapters are for correctness: their grid does not matter).
   */
  get gridNeedsCalibration(): boolean {
    return !parallelismOf(this.description).known && !isSoftwareAdapter(this.description);
  }

  /** Default lean `grid`, as tuned by the attention kernels for this device. */
  get defaultGrid(): number {
    return attentionGrid(this.ctx);
  }

  /** The lean grid for one problem: `base`, or one worker a unit where that is faster. */
  leanGrid(problem: LeanGridProblem, base: number): number {
    return leanGridFor(this.ctx, problem, base);
  }

  /** How a batch-invariant schedule cuts units of `unitRows` rows (`invariantPieceFor`). */
  invariantPieces(unitRows: number): PieceRule {
    return invariantPieceFor(this.#tuning, unitRows);
  }

  /** The device. */
  get device(): GPUDevice {
    return this.#rt.device;
  }

  /** Whether the device was lost or destroyed. */
  get lost(): boolean {
    return this.#rt.lost;
  }

  /** Number of compiled pipelines in the cache. */
  get pipelineCount(): number {
    return this.#rt.pipelineCount;
  }

  /** Buffer requests served by new buffers versus from the pool, since creation. */
  poolStats(): { created: number; reused: number } {
    return this.#rt.poolStats;
  }

  /** Tensors over this many bytes are stored across several buffers. */
  get partBytes(): number {
    return this.#rt.partBytes;
  }

  upload(values: Float32Array, dtype: DType, shape?: Shape): DataId {
    return this.#rt.upload(values, dtype, shape);
  }

  /** Storage of `shape` (in parts where over one binding) whose values are not set. */
  allocUninitialized(shape: Shape, dtype: DType): DataId {
    return this.#rt.allocShaped(shape, dtype);
  }
  read(id: DataId, dtype: DType, size: number): Promise<Float32Array> {
    return this.#rt.read(id, dtype, size);
  }
  release(id: DataId): void {
    this.#rt.release(id);
  }
  memory(): MemoryInfo {
    return this.#rt.memory();
  }
  /**
   * The parts (ranges `[n0, n1)` of the second-to-last axis) of a tensor stored across
   * several buffers, or null when it is stored whole.
   */
  storageParts(
    t: TensorInfo,
  ): readonly { readonly id: DataId; readonly n0: number; readonly n1: number }[] | null {
    return this.#rt.storageParts(t.id, t.shape);
  }

  /** Refuses tensors stored in parts across buffers: only attention takes them. */
  #whole(op: string, ...xs: TensorInfo[]): void {
    for (const x of xs) this.#rt.whole(`webgpu ${op}`, x.id);
  }

  unary(op: UnaryOp, x: TensorInfo): DataId {
    this.#whole(op, x);
    return unaryKernel(this.#rt, op, x);
  }
  binary(op: BinaryOp, a: TensorInfo, b: TensorInfo, outShape: Shape, outDType: DType): DataId {
    this.#whole(op, a, b);
    return binaryKernel(this.#rt, op, a, b, outShape, outDType);
  }
  where(
    cond: TensorInfo,
    a: TensorInfo,
    b: TensorInfo,
    outShape: Shape,
    outDType: DType,
  ): DataId {
    this.#whole("where", cond, a, b);
    return whereKernel(this.#rt, cond, a, b, outShape, outDType);
  }
  reduce(op: ReduceOp, x: TensorInfo, axis: number): DataId {
    this.#whole(op, x);
    return reduceKernel(this.#rt, op, x, axis);
  }
  softmax(x: TensorInfo, axis: number): DataId {
    this.#whole("softmax", x);
    return softmaxKernel(this.#rt, x, axis);
  }
  matmul(
    a: TensorInfo,
    b: TensorInfo,
    transposeA: boolean,
    transposeB: boolean,
    outShape: Shape,
    outDType: DType,
  ): DataId {
    this.#whole("matmul", a, b);
    return matmulKernel(this.#rt, a, b, transposeA, transposeB, outShape, outDType);
  }
  transpose(x: TensorInfo, perm: readonly number[]): DataId {
    this.#whole("transpose", x);
    return transposeKernel(this.#rt, x, perm);
  }
  rope(
    x: TensorInfo,
    cos: TensorInfo,
    sin: TensorInfo,
    rows: TensorInfo,
    rotaryDim: number,
    interleaved: boolean,
  ): DataId {
    this.#whole("rope", x, cos, sin, rows);
    return ropeKernel(this.#rt, x, cos, sin, rows, rotaryDim, interleaved);
  }
  /** Takes x in parts too: the data is then stored in parts where over one binding. */
  quantize(x: TensorInfo, dtype: QuantDType): { data: DataId; scale: DataId } {
    return quantizeKernel(this.#rt, x, dtype);
  }
  dequantize(data: TensorInfo, scale: TensorInfo): DataId {
    return dequantizeKernel(this.#rt, data, scale);
  }
  cast(x: TensorInfo, dtype: DType): DataId {
    this.#whole("cast", x);
    return unaryKernel(this.#rt, "copy", x, dtype);
  }
  attention(
    q: TensorInfo,
    k: TensorInfo,
    v: TensorInfo,
    plan: AttentionPlan,
    inputs: AttentionInputs = {},
  ): { out: DataId; lse: DataId } {
    this.#rt.check();
    const tuning = this.attentionTuning;
    // Quantized K/V in parts: each part's run binds its part of the token scales.
    const runInputs = partScaleInputs((t) => this.storageParts(t), plan, inputs);
    const run = (qi: TensorInfo, ki: TensorInfo, vi: TensorInfo, r: AttentionRun) => {
      this.#whole("attention (one run per part: see backends/attention_parts.ts)", qi, ki, vi);
      // The launch prepared with the plan, unless the tuning changed since (benchmarks).
      const prepared = r.prepared as PreparedRun | undefined;
      // Paged: K/V are the page buffers; the launch is planned for the plan's K/V shape.
      const kv = {
        shape: plan.paged ? plan.kvShape : ki.shape,
        dtype: ki.dtype,
        kvScales: plan.kvScales,
      };
      const launch = prepared?.tuning === tuning && prepared.launch.outDtype === qi.dtype
        ? prepared.launch
        : planWebgpuAttention(this.ctx, qi, kv, kernelRun(plan, r), tuning);
      return runWebgpuAttention(this.ctx, launch, qi, ki, vi, runInputs(r.part));
    };
    const pages = inputs.pages;
    if (pages) this.#whole("attention (page buffers)", ...pages.kPages, ...pages.vPages);
    const scales = [
      ...plan.parts ? [] : [inputs.kScale, inputs.vScale],
      ...pages?.kScalePages ?? [],
      ...pages?.vScalePages ?? [],
    ];
    this.#whole("attention (K/V scales)", ...scales.filter((t) => t !== undefined));
    return plan.parts
      ? attentionInParts(this, q, k, v, plan, run, inputs)
      : run(q, k, v, plan.runs[0]);
  }

  /**
   * Plans one run's launch once, with the plan (kernel choice, packed schedule, dispatch
   * sizes): a cached plan then runs with no planning at all.
   */
  prepareAttention(plan: AttentionPlan, run: AttentionRun): unknown {
    const [B, Hkv, , D] = plan.kvShape;
    const part = run.part === undefined ? null : plan.parts![run.part];
    const kvShape = part ? [B, Hkv, part.n1 - part.n0, D] : plan.kvShape;
    return {
      tuning: this.attentionTuning,
      launch: planWebgpuAttention(
        this.ctx,
        { shape: plan.qShape, dtype: plan.runDtype },
        { shape: kvShape, dtype: plan.kvDtype, kvScales: plan.kvScales },
        kernelRun(plan, run),
        this.attentionTuning,
      ),
    };
  }
  createIndexTable(values: Int32Array): DataId {
    return createIndexTable((x) => this.#rt.upload(x, "float32"), values);
  }
  gatherPageRows(pages: TensorInfo, rows: Int32Array, B: number, n: number): DataId {
    this.#rt.check();
    this.#whole("gatherPageRows", pages);
    return gatherPageRows(this.ctx, pages, rows, B, n);
  }
  scatterPageRows(pages: TensorInfo, src: TensorInfo, rows: Int32Array): void {
    this.#rt.check();
    this.#whole("scatterPageRows", pages, src);
    scatterPageRows(this.ctx, pages, src, rows);
  }
  mergeStates(
    outs: readonly TensorInfo[],
    lses: readonly TensorInfo[],
  ): { out: DataId; lse: DataId } {
    this.#rt.check();
    this.#whole("mergeStates", ...outs, ...lses);
    return webgpuMergeStates(this.ctx, outs, lses);
  }

  /** Submits the pending commands without waiting. */
  flush(): void {
    this.#rt.flush();
  }

  /**
   * Records GPU timestamps around every compute pass while on (ignored without
   * `timestamp-query`); read them with {@link WebGpuBackend.readTimings}.
   */
  setProfiling(on: boolean): void {
    this.#rt.setProfiling(on);
  }

  /**
   * Holds automatic submissions back (benchmarks): while on, dispatches accumulate in one
   * command buffer until {@link WebGpuBackend.flush}, so the GPU never waits for the CPU
   * between the calls of a timed run. Turn it off again before normal use.
   */
  holdSubmits(on: boolean): void {
    this.#rt.holdSubmits(on);
  }

  /**
   * Stamps the point after everything dispatched so far (benchmarks): an empty timed pass,
   * read with {@link WebGpuBackend.readTimings} in order with the profiled passes; the span
   * between two marks' end stamps is the GPU time of the work between them, at the cost of
   * one pass boundary. False (nothing written) without `timestamp-query`.
   */
  mark(label = "mark"): boolean {
    return this.#rt.mark(label);
  }

  /** GPU time of each pass recorded while profiling, in dispatch order; clears the list. */
  readTimings(): Promise<PassTiming[]> {
    return this.#rt.readTimings();
  }

  /** Destroys the device; tensors on this backend cannot be used afterwards. */
  destroy(): void {
    this.#rt.destroy();
  }

  /** `WebGpuBackend(<adapter>)`. */
  toString(): string {
    return `WebGpuBackend(${this.description})`;
  }
}

const HINT = "Install a GPU driver or, on Linux without a GPU, Mesa's software Vulkan driver " +
  "(Debian/Ubuntu: apt-get install mesa-vulkan-drivers), and set XDG_RUNTIME_DIR to a 0700 " +
  "folder (the Vulkan loader asks for it).";

/**
 * Creates a WebGPU backend on a high-performance adapter. Raises the storage, buffer and
 * workgroup limits to the adapter's; requests `shader-f16` and `timestamp-query` where listed
 * and tries `subgroups` (not listed by some drivers that support it).
 *
 * @throws {BackendUnavailableError} no WebGPU, no adapter, or the device cannot be created;
 *   also when Deno refuses a permission on the way (the message names the flag).
 * @throws {LimitError} a `requiredLimits` entry exceeds what the adapter offers.
 *
 * @example
 * ```ts ignore
 * import { webgpu } from "./mod.ts";
 * const gpu = await webgpu();
 * console.log(gpu.description);
 * ```
 */
export async function webgpu(options: WebGpuOptions = {}): Promise<WebGpuBackend> {
  try {
    return await openWebgpu(options);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new BackendUnavailableError(
        `webgpu: Deno refused a permission: ${e.message} (run with the flag it names, or -A)`,
      );
    }
    throw e;
  }
}

async function openWebgpu(options: WebGpuOptions): Promise<WebGpuBackend> {
  let opts = readOptions<WebGpuOptions>("webgpu", options, WEBGPU_OPTIONS);
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new BackendUnavailableError(`WebGPU is not available: navigator.gpu is missing. ${HINT}`);
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({
      powerPreference: opts.powerPreference ?? "high-performance",
    });
  } catch (e) {
    throw new BackendUnavailableError(`WebGPU requestAdapter() failed: ${e}. ${HINT}`);
  }
  if (!adapter) {
    throw new BackendUnavailableError(
      `no WebGPU adapter: requestAdapter() returned null. ${backendEnvAdvice()} ${HINT}`,
    );
  }
  const al = adapter.limits as unknown as Record<string, number>;
  const requiredLimits: Record<string, number> = {};
  if (!opts.defaultLimits) { for (const k of RAISED_LIMITS) requiredLimits[k] = al[k]; }
  for (const [k, v] of Object.entries(opts.requiredLimits ?? {})) {
    if (v === undefined) continue;
    if (!(k in al)) throw new LimitError(`webgpu: unknown limit ${JSON.stringify(k)}`);
    const better = k.startsWith("min") ? v >= al[k] : v <= al[k];
    if (!better) {
      throw new LimitError(`webgpu: requiredLimits.${k} = ${v}, but the adapter offers ${al[k]}`);
    }
    requiredLimits[k] = v;
  }
  if (opts.splitBytes !== undefined) {
    if (opts.partBytes !== undefined) {
      throw new ArgumentError("webgpu: give partBytes only (splitBytes is its deprecated name)");
    }
    opts = { ...opts, partBytes: opts.splitBytes };
  }
  if (
    opts.partBytes !== undefined &&
    (typeof opts.partBytes !== "number" || !Number.isSafeInteger(opts.partBytes) ||
      opts.partBytes < 16)
  ) {
    throw new ArgumentError(
      `webgpu: partBytes must be an integer ≥ 16, got ${show(opts.partBytes)}`,
    );
  }
  const off = new Set(opts.disableFeatures ?? []);
  const wanted: GPUFeatureName[] = [];
  for (const f of ["shader-f16", "timestamp-query"] as const) {
    if (adapter.features.has(f) && !off.has(f)) wanted.push(f);
  }
  let device: GPUDevice | null = null;
  let lastError: unknown = null;
  // `subgroups` is often missing from adapter.features yet granted: try it first.
  const attempts = off.has("subgroups")
    ? [wanted]
    : [[...wanted, "subgroups" as GPUFeatureName], wanted];
  for (const requiredFeatures of attempts) {
    try {
      device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
      break;
    } catch (e) {
      lastError = e;
    }
  }
  if (!device) {
    throw new BackendUnavailableError(`WebGPU requestDevice() failed: ${lastError}`);
  }
  const features: GpuFeatures = {
    f16: device.features.has("shader-f16"),
    subgroups: device.features.has("subgroups" as GPUFeatureName),
    timestamps: device.features.has("timestamp-query"),
  };
  const info = adapter.info;
  const extra = [
    info.vendor && `vendor ${info.vendor}`,
    info.architecture && `architecture ${info.architecture}`,
    info.device && info.device !== "0" && info.device !== info.description &&
    `device ${info.device}`,
  ].filter(Boolean);
  const description = (info.description || info.device || "unknown WebGPU adapter") +
    (extra.length ? ` [${extra.join(", ")}]` : "");
  return new WebGpuBackend(device, features, description, opts.partBytes);
}

/**
 * What DENO_WEBGPU_BACKEND says about a missing adapter. Read only when permitted: without
 * `--allow-env` Deno would throw NotCapable here, hiding the real failure.
 */
function backendEnvAdvice(): string {
  const name = "DENO_WEBGPU_BACKEND";
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return `(${name} was not read: run with --allow-env=${name} to check it; if set, it must ` +
      `name a backend present here, e.g. vulkan, or be unset.)`;
  }
  const env = Deno.env.get(name);
  return env === undefined
    ? `(${name} is unset, so wgpu tried every backend it has.)`
    : `(${name}=${JSON.stringify(env)} limits wgpu to that backend: unset it, or name one ` +
      `present here, e.g. vulkan.)`;
}
