/**
 * WebGPU tuning knobs are validated when set (issue #19, item 3): `{ ws: true, U: 0 }` made
 * every later attention call spin forever, and `U: 0, -1, 1.5` threw raw errors. A knob out of
 * its range is an ArgumentError naming the knob and its range; the backend keeps working.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { flashAttention, leanAttentionSchedule, randn } from "../mod.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { expectError } from "./_assert.ts";
import { webgpuTest } from "./_backends.ts";

webgpuTest(
  "WebGPU attentionTuning: knobs out of range are ArgumentErrors naming the knob",
  async (b) => {
    const before = b.attentionTuning;
    const bad: [unknown, string[]][] = [
      [{ ws: true, U: 0 }, ["U", "1 to 16", "0"]],
      [{ U: -1 }, ["U", "-1"]],
      [{ U: 1.5 }, ["U", "1.5"]],
      [{ U: NaN }, ["U"]],
      [{ L: 3 }, ["L", "power of two"]],
      [{ wg: 100 }, ["wg", "multiple of 32", "100"]],
      [{ wg: 2048 }, ["wg", "2048"]],
      [{ rs: 16 }, ["rs", "1 to 8"]],
      [{ mergeBarriers: 0 }, ["mergeBarriers", "1 to 3", "0"]],
      [{ mergeBarriers: 4 }, ["mergeBarriers", "1 to 3", "4"]],
      [{ invariantPiece: 96 }, ["invariantPiece", "power of two", "96"]],
      [{ invariantPiece: 32 }, ["invariantPiece", "64 to 16384", "32"]],
      [{ invariantPieces: 0 }, ["invariantPieces", "1 to 1024", "0"]],
      [{ pf: 1 }, ["pf", "boolean"]],
      [{ pairedPieces: "yes" }, ["pairedPieces", "boolean", "yes"]],
      [{ kernel: "fast" }, ["kernel", "fast"]],
      [{ Ux: 1 }, ["unknown knob", "Ux"]],
      [null, ["expected an object"]],
    ];
    for (const [t, mentions] of bad) {
      expectError(ArgumentError, () => (b.attentionTuning = t as never), mentions, String(t));
      assertEquals(b.attentionTuning, before, "a refused tuning leaves the old one");
    }
    // A valid tuning is kept (as a frozen copy) and calls still run.
    const given = { ws: true, U: 2 };
    b.attentionTuning = given;
    given.U = 0; // a later change to the object given does not reach the backend
    assertEquals(b.attentionTuning, { ws: true, U: 2 });
    const q = randn([1, 4, 1, 64], { seed: 1, backend: b });
    const k = randn([1, 1, 300, 64], { seed: 2, backend: b });
    const out = flashAttention(q, k, k);
    assertEquals((await out.data()).every(Number.isFinite), true);
    for (const t of [q, k, out]) t.dispose();
  },
);

webgpuTest(
  "WebGPU invariantPiece/invariantPieces: the batch-invariant pieces follow the rule set now",
  (b) => {
    const q = randn([1, 4, 1, 32], { seed: 1, backend: b }); // four rows a unit
    const q1 = randn([1, 1, 1, 32], { seed: 3, backend: b }); // one row a unit
    const k = randn([1, 1, 4096, 32], { seed: 2, backend: b });
    // Tiles of 64 keys: the longest piece of a unit, in keys, under each rule (set in turn, so
    // a plan cached under another rule would show here).
    const longest = (qq: typeof q, kk = k) => {
      const s = leanAttentionSchedule(qq, kk, kk, { batchInvariant: true, tileSize: 64 });
      return Math.max(...s.workers.flat().map((g) => (g.tileEnd - g.tileStart) * 64));
    };
    try {
      const rules: [Record<string, number>, number, number][] = [
        [{}, 512, 1024], // default: 512 keys for multi-row units, 1024 for one-row units
        [{ invariantPiece: 256 }, 256, 256],
        [{ invariantPiece: 128, invariantPieces: 16 }, 256, 256], // 32 pieces of 128: doubled
        [{ invariantPiece: 128, invariantPieces: 32 }, 128, 128],
        [{}, 512, 1024],
      ];
      for (const [t, four, one] of rules) {
        b.attentionTuning = t;
        assertEquals(longest(q), four, `four rows, ${JSON.stringify(t)}`);
        assertEquals(longest(q1), one, `one row, ${JSON.stringify(t)}`);
      }
      // The default's short units (`MULTI_ROW_SHORT_UNITS`): multi-row units of at most 2048
      // keys take 256-key pieces, one key more 512; one-row units keep 1024.
      for (const [n, four, one] of [[2048, 256, 1024], [2049, 512, 1024]]) {
        const kn = randn([1, 1, n, 32], { seed: 4, backend: b });
        try {
          assertEquals([longest(q, kn), longest(q1, kn)], [four, one], `${n} keys`);
        } finally {
          kn.dispose();
        }
      }
    } finally {
      for (const t of [q, q1, k]) t.dispose();
    }
  },
);
