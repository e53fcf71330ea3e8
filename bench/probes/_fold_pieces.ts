// Shared by probes (ablate.ts `fs1k`, `fs256`, `fg1k`, `fg256`): what a piece boundary would
// cost if a worker folded its consecutive pieces in registers instead of ending a segment at
// each (#20 item 3; bench/NOTES.md, "Where #17 and #20 stand after session (10)").
//
// The edit cuts each segment's key loop into pieces of P keys from the segment's start (P a
// multiple of the keys a batch holds, so every piece but the last is whole batches) and, after
// each piece, folds the piece's running state into a second one held in registers, then resets
// the running state (max −∞, sums 0), as a batch-invariant kernel with that canonical order would:
// - `fs`: a slot (L lanes) folds its own state: no shuffles (the subgroup's slots share the max,
//   so the fold's two exponentials are uniform over the subgroup). The cheapest boundary: the
//   canonical order would be a fold per slot, then the slots' sum, then the subgroups' merge.
// - `fg`: the slots' states are summed by shuffles first, then folded: the order of the NOTES
//   sketch (a fold per subgroup), whose split pieces publish 8 states a row, not 32.
// At the segment's end the folded state replaces the running one and the kernel's own end (slot
// sums, subgroup merge) runs on it, so the results are right (within rounding) and `--check`
// applies. Supports the key loop without the tail mask or a window (decode), non-held mode.

/** The subgroup kernel's WGSL with its key loop cut into folded pieces of `P` keys. */
export function foldPieces(code: string, P: number, perSubgroup: boolean): string {
  const lines = code.split("\n");
  const a = lines.findIndex((l) =>
    /^\s*for \(var base = k0; base < kend; base \+= \d+u\) \{$/.test(l)
  );
  const z = lines.findIndex((l) => l.includes("let badw = subgroupOr(bad);"));
  if (a < 0 || z < a || lines[z - 1].trim() !== "}") {
    throw new Error("fold_pieces: needs the plain key loop (no tail mask, no window)");
  }
  if (code.includes("var lh0 = ")) throw new Error("fold_pieces: held mode is not supported");
  const SU = Number(/base \+= (\d+)u/.exec(lines[a])![1]);
  if (P % SU) throw new Error(`fold_pieces: ${P} keys are not whole batches of ${SU}`);
  const decl = lines.slice(0, a).join("\n");
  const rows = [...decl.matchAll(/var m(\d+) = ninf;/g)].map((m) => Number(m[1]));
  const vecs = (r: number) =>
    [...decl.matchAll(new RegExp(`var o${r}_(\\d+) = vec4<f32>\\(0\\.0\\);`, "g"))].map((m) =>
      Number(m[1])
    );
  const L = Number(/let lane = sgi % (\d+)u;/.exec(code)![1]);
  const ind = "    ";
  const fold: string[] = [];
  if (perSubgroup) {
    fold.push(`${ind}  for (var off = ${L}u; off < sgs; off <<= 1u) {`);
    for (const r of rows) {
      fold.push(`${ind}    l${r} += subgroupShuffleXor(l${r}, off);`);
      for (const j of vecs(r)) {
        fold.push(`${ind}    o${r}_${j} += subgroupShuffleXor(o${r}_${j}, off);`);
      }
    }
    fold.push(`${ind}  }`);
  }
  for (const r of rows) {
    fold.push(`${ind}  let fm${r} = max(pm${r}, m${r});`);
    fold.push(`${ind}  let fa${r} = select(0.0, exp(pm${r} - fm${r}), pm${r} != ninf);`);
    fold.push(`${ind}  let fb${r} = select(0.0, exp(m${r} - fm${r}), m${r} != ninf);`);
    fold.push(`${ind}  pm${r} = fm${r};`);
    fold.push(`${ind}  pl${r} = pl${r} * fa${r} + l${r} * fb${r};`);
    fold.push(`${ind}  l${r} = 0.0;`);
    fold.push(`${ind}  m${r} = ninf;`);
    for (const j of vecs(r)) {
      fold.push(`${ind}  po${r}_${j} = po${r}_${j} * fa${r} + o${r}_${j} * fb${r};`);
      fold.push(`${ind}  o${r}_${j} = vec4<f32>(0.0);`);
    }
  }
  const init: string[] = [];
  for (const r of rows) {
    init.push(`${ind}var pm${r} = ninf;`, `${ind}var pl${r} = 0.0;`);
    for (const j of vecs(r)) init.push(`${ind}var po${r}_${j} = vec4<f32>(0.0);`);
  }
  // After the last piece: the folded state is the running one (per subgroup: the slots already
  // hold its sum, so only slot 0 keeps it for the kernel's own slot sum).
  const keep = (x: string) =>
    perSubgroup ? `select(${x.startsWith("po") ? "vec4<f32>(0.0)" : "0.0"}, ${x}, sgi < ${L}u)` : x;
  const end: string[] = [];
  for (const r of rows) {
    end.push(`${ind}m${r} = pm${r};`, `${ind}l${r} = ${keep(`pl${r}`)};`);
    for (const j of vecs(r)) end.push(`${ind}o${r}_${j} = ${keep(`po${r}_${j}`)};`);
  }
  const loop = lines[a].replace(
    /for \(var base = k0; base < kend; base \+= (\d+)u\) \{/,
    `for (var pb = k0; pb < kend; pb += ${P}u) {\n${ind}  let pe = min(pb + ${P}u, kend);\n${ind}  for (var base = pb; base < pe; base += $1u) {`,
  );
  return [
    ...lines.slice(0, a),
    ...init,
    loop,
    ...lines.slice(a + 1, z - 1),
    `${ind}  }`,
    ...fold,
    `${ind}}`,
    ...end,
    ...lines.slice(z),
  ].join("\n");
}
