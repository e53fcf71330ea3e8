#!/bin/bash
# Session 2026-12-07 (15): the candidate defaults (pairedPieces on, 512-key shortest pieces for
# units of two or more rows) checked and timed on a GPU from the tree as it is: run from the root
# with `run` carrying .gpu (bench/gpu_bundle.sh, which caches the tests' packages too):
# `bash bench/probes/paired_default_check.sh`. About 3 minutes:
#  1. the piece-runs test at 40 random cases (runs, paired or not, against one segment a piece,
#     bit for bit) and the tuning, batch-invariant, determinism and fused-merge tests;
#  2. the bench's lean and lean-invariant rows at the README's multi-row invariant shapes.
set -u
source bench/probes/_test_summary.sh
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
grep -c "pairedPieces ?? true" backends/webgpu/attention/plan.ts
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
CI=true PIECE_RUNS_CASES=40 timeout 100 $T tests/piece_runs_test.ts tests/tuning_test.ts tests/batch_invariant_test.ts tests/determinism_test.ts tests/webgpu_fused_merge_test.ts > $OUT/t1.log 2>&1
test_summary $? $OUT/t1.log
timeout 80 deno run -A --lock=deno.lock bench/bench.ts --dtype f16 --d 128 --configs 1x32x8,4x32x8,16x32x8 --n 4k,16k,64k --algos lean,lean-invariant --no-peers --budget 50 --out $OUT/bench > $OUT/bench.txt 2>&1
echo "bench rc=$?"
rm -f $OUT/bench/*.svg
grep -E "^\[" $OUT/bench.txt | cut -c1-120
