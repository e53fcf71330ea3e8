/**
 * Host time of planning one attention call, µs per call: `leanAttentionSchedule` and
 * `flashSchedule` (validate + grid + schedule), `leanAttentionPlan` where the tree has it
 * (a cached plan), and with `--gpu` the host time of a whole `leanAttention` call (encode
 * and submit, no wait). Takes the `mod.ts` to measure, so an old checkout can be timed by
 * the same script: `deno run -A --config deno.json bench/probes/plan_time.ts ./mod.ts --gpu`
 * (from the checkout's root). Results: bench/NOTES.md, "Session 2026-12-06".
 *
 * @module
 */
const modPath = Deno.args[0];
const la = await import(new URL(modPath, `file://${Deno.cwd()}/`).href);
const gpu = Deno.args.includes("--gpu");
const backend = gpu ? await la.webgpu() : la.cpu();
console.log(`backend: ${backend.description}`);
const shapes: [number, number, number, number, number][] = [
  [1, 32, 8, 4096, 128],
  [4, 32, 32, 4096, 128],
  [16, 32, 8, 1024, 128],
];
const rows: string[] = [];
for (const [B, Hq, Hkv, N, D] of shapes) {
  const q = la.randn([B, Hq, 1, D], { seed: 1, backend, dtype: "float16" });
  const k = la.zeros([B, Hkv, N, D], { backend, dtype: "float16" });
  const kvLens = Array.from({ length: B }, (_, b) => N - b * 7);
  const time = (f: () => unknown, reps = 2000) => {
    for (let i = 0; i < 200; i++) f();
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) f();
    return ((performance.now() - t0) / reps) * 1000;
  };
  const lean = time(() => la.leanAttentionSchedule(q, k, k, { kvLens }));
  const fd = time(() => la.flashSchedule(q, k, k, { kvLens, numSplits: "auto" }));
  const plan = la.leanAttentionPlan ? time(() => la.leanAttentionPlan(q, k, k, { kvLens })) : NaN;
  let call = NaN;
  if (gpu) {
    const reps = 300;
    for (let i = 0; i < 20; i++) la.leanAttention(q, k, k, { kvLens }).dispose();
    await la.leanAttention(q, k, k, { kvLens }).data();
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) la.leanAttention(q, k, k, { kvLens }).dispose();
    call = ((performance.now() - t0) / reps) * 1000;
    await la.leanAttention(q, k, k, { kvLens }).data();
  }
  rows.push(
    `(${B},${Hq},${Hkv}) N=${N}: lean schedule ${lean.toFixed(1)} us, fd schedule ${
      fd.toFixed(1)
    } us, lean plan ${plan.toFixed(1)} us, lean call (host) ${call.toFixed(1)} us`,
  );
  q.dispose();
  k.dispose();
}
console.log(rows.join("\n"));
backend.destroy?.();
