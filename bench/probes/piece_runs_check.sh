#!/bin/bash
# Piece runs (AttentionTuning.pieceRuns, session 2026-12-06 (13)) on a GPU: run from the root with
# `run` carrying .gpu (../shared/gpu/bundle.sh): `bash bench/probes/piece_runs_check.sh`.
# (Run once, in session (13), when piece runs were the default: its `inv` was piece runs then;
# the tokens now name them `inv+pr`.)
#  1. the piece-runs, batch-invariant and determinism tests (the first compares the bits of piece
#     runs with one segment a piece);
#  2. ablate: lean (def), batch-invariant in piece runs (inv+pr) and one segment a piece (inv),
#     each with the default rule (1024-key pieces, at most 16) and with 256-key pieces (pc256).
set -u
source bench/probes/_test_summary.sh
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
CI=true timeout 150 $T tests/piece_runs_test.ts tests/batch_invariant_test.ts tests/determinism_test.ts > $OUT/t1.log 2>&1
test_summary $? $OUT/t1.log
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,inv+pr,inv,inv+pr+pc256,inv+pc256 --shapes"
timeout 150 $A "16,32,8,16384;4,32,8,16384;1,32,8,4096;1,32,8,16384" > $OUT/a1.txt 2>&1; echo "a1 rc=$?"
timeout 180 $A "16,32,8,4096;4,32,8,4096;4,32,8,65536;1,32,32,4096;1,32,32,16384" > $OUT/a2.txt 2>&1; echo "a2 rc=$?"
head -1 $OUT/a1.txt; grep -hi "error" $OUT/a1.txt $OUT/a2.txt | head -3
grep -hE "µs:|max" $OUT/a1.txt $OUT/a2.txt | cut -c1-300
