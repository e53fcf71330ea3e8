#!/bin/bash
# Piece runs (AttentionTuning.pieceRuns, opt-in; session 2026-12-06 (13)) verified and timed on a
# GPU before they become the default: run from the root with `run` carrying .gpu:
# `bash bench/probes/piece_runs_bench.sh`. By priority:
#  1. the piece-runs test at length (120 random cases and a fixed one: runs against one segment a
#     piece, bit for bit), then the batch-invariant, determinism and fused-merge tests with piece
#     runs the default (a /tmp copy of the tree);
#  2. from that copy, the bench's lean and lean-invariant rows at the README's multi-row
#     invariant shapes;
#  3. ablate: lean, one segment a piece, piece runs, piece runs with one merge barrier (mb1),
#     without a piece end's barriers (prnb, racy) and uncut (onep, wrong): where a piece end's
#     ≈ 2 µs go;
#  4. the one-row NaN, with piece runs forced on for one-row units, the fold as it is and
#     branch-free (copies; about 2 minutes). Everything takes about 8 minutes at most.
# Ran on an H100 on 2026-12-07 (results/probes/h100-2026-12-07-piece-runs-bench/, 4.4 minutes);
# since then piece runs are the default, and step 1's `sed` finds nothing to flip.
set -u
source bench/probes/_test_summary.sh
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
rm -rf /tmp/pr && mkdir /tmp/pr && cp -r $(ls -A | grep -v '^.gpu$') /tmp/pr/ && ln -s $PWD/.gpu /tmp/pr/.gpu
sed -i 's/tuning.pieceRuns ?? false/tuning.pieceRuns ?? true/' /tmp/pr/backends/webgpu/attention/plan.ts
grep -c "pieceRuns ?? true" /tmp/pr/backends/webgpu/attention/plan.ts
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
(cd /tmp/pr && CI=true PIECE_RUNS_CASES=120 timeout 120 $T tests/piece_runs_test.ts tests/batch_invariant_test.ts tests/determinism_test.ts tests/webgpu_fused_merge_test.ts) > $OUT/t1.log 2>&1
test_summary $? $OUT/t1.log
(cd /tmp/pr && timeout 150 deno run -A --lock=deno.lock bench/bench.ts --dtype f16 --d 128 --configs 1x32x8,4x32x8,16x32x8 --n 4k,16k,64k --algos lean,lean-invariant --no-peers --budget 110 --out $OUT/bench) > $OUT/bench.txt 2>&1; echo "bench rc=$?"
tail -16 $OUT/bench.txt | cut -c1-200
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,inv,inv+pr,inv+pr+mb1,inv+pr+prnb,inv+pr+onep --shapes"
timeout 90 $A "16,32,8,16384;16,32,8,4096;4,32,8,16384" > $OUT/a1.txt 2>&1; echo "a1 rc=$?"
head -1 $OUT/a1.txt; grep -hE "µs:|max" $OUT/a1.txt | cut -c1-300
# 4. (last, if time is left) the one-row NaN of session (13): piece runs forced on for one-row
#    units in a copy (plan.ts's unitRows >= 2 dropped, the test's one-row assertion too), with
#    the pieces' fold as it is (pr1) and branch-free (pr2: `select` on mN != ninf, the same
#    arithmetic; NOTES.md's hypothesis: a split subgroup not reconverging).
for v in pr1 pr2; do
  rm -rf /tmp/$v && cp -r /tmp/pr /tmp/$v
  sed -i 's/unitRows >= 2 \&\& unitRows <= c.R/unitRows <= c.R/' /tmp/$v/backends/webgpu/attention/plan.ts
  sed -i 's/: on.runs \&\& Hq === Hkv/: false \&\& Hq === Hkv/' /tmp/$v/tests/piece_runs_test.ts
done
python3 - <<'PY'
p = "/tmp/pr2/backends/webgpu/attention/_wgsl_merge.ts"
s = open(p).read()
old = """    `let mN = max(${m}, ${mb});`,
    `if (mN != ninf) {`,
    `  let al = select(0.0, exp(${m} - mN), ${m} != ninf);`,
    `  let be = select(0.0, exp(${mb} - mN), ${mb} != ninf);`,
    `  ${l} = al * ${l} + be * ${lb};`,
    `  ${o} = al * ${o} + be * ${ob};`,
    `  ${m} = mN;`,
    `}`,"""
new = """    `let mN = max(${m}, ${mb});`,
    `let go = mN != ninf;`,
    `let al = select(0.0, exp(${m} - mN), ${m} != ninf);`,
    `let be = select(0.0, exp(${mb} - mN), ${mb} != ninf);`,
    `${l} = select(${l}, al * ${l} + be * ${lb}, go);`,
    `${o} = select(${o}, al * ${o} + be * ${ob}, go);`,
    `${m} = select(${m}, mN, go);`,"""
assert old in s
open(p, "w").write(s.replace(old, new))
PY
for v in pr1 pr2; do
  grep -c "unitRows <= c.R" /tmp/$v/backends/webgpu/attention/plan.ts
  (cd /tmp/$v && CI=true PIECE_RUNS_CASES=60 timeout 60 $T tests/piece_runs_test.ts) > $OUT/$v.log 2>&1; echo "$v rc=$?"
  grep -E "^(ok|FAILED) \||cases ran|Caused" $OUT/$v.log | cut -c1-250
done
