/**
 * Is a change to the CPU executor faster, with the same bits? Runs the in-thread attention
 * call (`cpuAttention`, lean's schedule, float32, one query token, D = 128) of an old checkout
 * and of this one in one process, interleaved call by call on the same seeded inputs, and
 * prints each one's median and minimum ms and whether their output and lse bits are equal.
 *
 * Run: `deno run -A bench/probes/cpu_ab.ts OLD_ROOT [B,Hq,Hkv,N=1,32,8,16384] [rounds=15]`,
 * where OLD_ROOT holds the old tree, e.g. `git archive HEAD | tar -x -C /tmp/old`.
 *
 * @module
 */
const [oldRoot, shape, roundsArg] = Deno.args;
if (!oldRoot) throw new Error("usage: cpu_ab.ts OLD_ROOT [B,Hq,Hkv,N] [rounds]");
const [B, Hq, Hkv, N] = (shape || "1,32,8,16384").split(",").map(Number);
const rounds = Number(roundsArg ?? 15);

type Out = { out: Float32Array; lse: Float32Array };

/** The tree's in-thread call on its own copy of the inputs (same seeds, same values). */
async function load(root: string): Promise<() => Out> {
  const { cpuAttention } = await import(`${root}/backends/cpu/attention.ts`);
  const { decodeCase } = await import(`${root}/bench/probes/_cpu_case.ts`);
  const { q, k, v, params, info } = decodeCase(B, Hq, Hkv, N);
  return () => cpuAttention(info(q), info(k), info(v), params);
}

const here = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const calls = { old: await load(oldRoot.replace(/\/$/, "")), new: await load(here) };
const times: Record<string, number[]> = { old: [], new: [] };
const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const equal = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && bytes(a).every((x, i) => x === bytes(b)[i]);
const first = { old: calls.old(), new: calls.new() };
for (let r = 0; r < rounds; r++) {
  for (const [name, call] of Object.entries(calls)) {
    const t0 = performance.now();
    call();
    times[name].push(performance.now() - t0);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(
  `(${B},${Hq},${Hkv}) N=${N}: bits equal: out ${equal(first.old.out, first.new.out)}, lse ${
    equal(first.old.lse, first.new.lse)
  }`,
);
for (const [name, ts] of Object.entries(times)) {
  console.log(`${name}: median ${median(ts).toFixed(2)} ms, min ${Math.min(...ts).toFixed(2)} ms`);
}
