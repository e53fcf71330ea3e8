#!/bin/bash
# One-row units (MHA decode) in piece runs, after the unrolled merge (session 2026-12-07 (19)).
# Sessions (13)-(14) kept one-row units out of runs: NaN on an H200 and an H100 (D = 32, lens
# [1793], [2561], [0, 257]) and 9-25 points slower. Session (18) found NaN of the same kind in
# D = 32 multi-row runs, caused by the merge under `if (act)` (half a subgroup), and fixed it by
# running the merge on every thread. Hypothesis: the one-row NaN was the same fault. If so, runs
# let one-row short units take short pieces (more workers at B = 1) without a segment end a piece.
# Run from the root with `run` carrying .gpu: `bash bench/probes/one_row_runs.sh` (about 4 min).
#  1. a copy with one-row units allowed in runs (plan.ts's `unitRows >= 2` dropped, the test's
#     one-row assertion too): piece_runs (80 cases) and batch_invariant tests;
#  2. ablate, chained, cost over lean: today's rule (`inv`) and shortest pieces 256 / 512 at
#     one-row 1k-4k shapes, in this tree (segments) and in the copy (runs); then GQA 4k with
#     256-key pieces (this tree): what the cheaper piece end does to the 4k rule.
# Files back: tests.txt, t.log, ablate.txt.
# Ran on an H100 on 2026-12-07 (results/probes/h100-2026-12-07-one-row-runs/): the hypothesis is
# refuted (piece_runs_test: NaN at f32, Hq = Hkv = 2, D 32, lens [1025], grid 1, 64 threads), and
# runs make 256-key one-row pieces cheaper at B = 4 only ((4,32,32) 1k +17.5 % against +36 %).
set -u
source bench/probes/_test_summary.sh
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
C=/tmp/or
rm -rf $C && mkdir $C && cp -r $(ls -A | grep -v '^.gpu$') $C/ && ln -s $PWD/.gpu $C/.gpu
sed -i 's/unitRows >= 2 \&\& unitRows <= c.R/unitRows <= c.R/' $C/backends/webgpu/attention/plan.ts
sed -i 's/: on.runs \&\& Hq === Hkv/: false \&\& Hq === Hkv/' $C/tests/piece_runs_test.ts
echo "edits: $(grep -c 'unitRows <= c.R' $C/backends/webgpu/attention/plan.ts)" \
  "$(grep -c 'false && Hq === Hkv' $C/tests/piece_runs_test.ts)"
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
(cd $C && CI=true PIECE_RUNS_CASES=80 timeout 150 $T tests/piece_runs_test.ts \
  tests/batch_invariant_test.ts) > $OUT/t.log 2>&1
test_summary $? $OUT/t.log
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants"
MHA="1,32,32,1024;4,32,32,1024;16,32,32,1024;1,64,64,1024;1,32,32,4096;16,32,32,4096"
for t in segments runs; do
  d=.; [ $t = runs ] && d=$C
  echo "== $t" >> $OUT/ablate.txt
  (cd $d && timeout 75 $A def,inv,inv+pc256,inv+pc512 --shapes "$MHA") >> $OUT/ablate.txt 2>&1
done
echo "== gqa 4k" >> $OUT/ablate.txt
timeout 50 $A def,inv,inv+pc256 --shapes "1,32,8,4096;4,32,8,4096;16,32,8,4096" \
  >> $OUT/ablate.txt 2>&1
grep -hE "^==|µs:|differs|max" $OUT/ablate.txt | cut -c1-160
