/**
 * K/V memories go to the attention Workers once, by number (`backends/cpu/_worker_memories.ts`):
 * a memory is in a job's fresh list only the first time a Worker needs it, numbers map back to
 * the memories they were sent with, and collected memories are forgotten by the Workers
 * (tests/_gc_worker_memories.ts, in a process with `gc()` exposed).
 */
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { ReceivedMemories, shipMemories } from "../backends/cpu/_worker_memories.ts";
import { assertGcScript } from "./_gc_script.ts";

const mem = () => new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });

Deno.test("worker memories: sent once per Worker, numbers unpack to the memories sent", () => {
  const [a, b, c] = [mem(), mem(), mem()];
  const w1 = new Set<number>(), w2 = new Set<number>();
  const got1 = new ReceivedMemories(), got2 = new ReceivedMemories();
  const s1 = shipMemories({ k: [a, undefined], v: [b, a] }, w1);
  assertEquals(s1.fresh?.map(([, m]) => m), [a, b], "a and b, a once");
  assertEquals(s1.ids.k[1], -1, "no memory: -1");
  assertEquals(got1.unpack(s1), { k: [a, undefined], v: [b, a] });
  const s2 = shipMemories({ k: [b], v: [c] }, w1);
  assertEquals(s2.fresh?.map(([, m]) => m), [c], "only c is new to this Worker");
  assertEquals(got1.unpack(s2), { k: [b], v: [c] });
  const s3 = shipMemories({ k: [b], v: [c] }, w2);
  assertEquals(s3.fresh?.map(([, m]) => m), [b, c], "another Worker gets its own");
  assertEquals(got2.unpack(s3), { k: [b], v: [c] });
  assert(shipMemories({ k: [b], v: [c] }, w2).fresh === undefined, "nothing new: no list");
  got1.forget(s2.ids.v[0]);
  assertEquals(got1.size, 1 + 1, "a and b left");
  throws(() => got1.unpack({ ids: { k: [], v: [s2.ids.v[0]] } }), /memory \d+ was never sent/);
});

Deno.test("worker memories: Workers forget memories collected on the calling thread", async () => {
  await assertGcScript(new URL("./_gc_worker_memories.ts", import.meta.url));
});
