/**
 * testing/progress.ts: quiet for short work; on a terminal one line redrawn in place; otherwise
 * plain lines no more often than asked, and a closing line.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { progress } from "../testing/progress.ts";

function clock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

Deno.test("progress: quiet for the first second, then plain lines every few seconds", () => {
  const c = clock();
  const out: string[] = [];
  const p = progress("cases", 10, { write: (s) => out.push(s), terminal: false, now: c.now });
  p.update(1);
  c.advance(500);
  p.update(2);
  assertEquals(out, [], "nothing within the first second");
  c.advance(1000);
  p.update(3, "lean f16");
  c.advance(1000);
  p.update(4); // within 5 s of the last line: skipped
  c.advance(5000);
  p.update(7);
  p.finish();
  assertEquals(out, [
    "cases: 3/10 (30 %), 2 s — lean f16\n",
    "cases: 7/10 (70 %), 8 s\n",
    "cases: 10/10 (100 %), 8 s — done\n",
  ]);
});

Deno.test("progress: on a terminal the line is redrawn in place and cleared at the end", () => {
  const c = clock();
  const out: string[] = [];
  const p = progress("rows", 4, { write: (s) => out.push(s), terminal: true, now: c.now });
  c.advance(1500);
  p.update(1);
  c.advance(200);
  p.update(2);
  p.finish();
  assertEquals(out.length, 3);
  assert(out[0].startsWith("\r\x1b[K") && out[0].includes("rows: 1/4"), out[0]);
  assert(out[1].includes("rows: 2/4 (50 %)"), out[1]);
  assertEquals(out[2], "\r\x1b[K");
});

Deno.test("progress: short work prints nothing at all", () => {
  const out: string[] = [];
  const p = progress("x", 3, { write: (s) => out.push(s), terminal: false });
  p.update(1);
  p.update(3);
  p.finish();
  assertEquals(out, []);
});
