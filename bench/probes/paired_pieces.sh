#!/bin/bash
# Two pieces a merge (`AttentionTuning.pairedPieces`, session 2026-12-07 (14)) and 512-key
# pieces, verified and timed on a GPU: run from the root with `run` carrying .gpu:
# `bash bench/probes/paired_pieces.sh`. By priority:
#  1. the piece-runs test at length (60 random cases: runs, paired or not, against one segment
#     a piece, bit for bit);
#  2. ablate, cost over lean: runs (the default), runs two pieces a merge (pp), 512-key pieces
#     (pc512), both, 256-key pieces with pp; multi-row and one-row shapes at 4k and 16k;
#  3. the bench's lean and lean-invariant rows with pairs on and 512-key shortest pieces (a /tmp
#     copy). About 5 minutes; `QUICK=1` (under 3 minutes): 20 test cases, five GQA shapes, no bench.
# QUICK=1 ran on an H100 on 2026-12-07 (results/probes/h100-2026-12-07-paired-pieces-quick/); since
# then pairs and 512-key multi-row pieces are the defaults (the full mode's seds find nothing to flip).
set -u
source bench/probes/_test_summary.sh
Q=${QUICK:-0}
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
# At most 8 files come back: no date or setup log files of their own.
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
CI=true PIECE_RUNS_CASES=$([ $Q = 1 ] && echo 20 || echo 60) timeout 80 $T tests/piece_runs_test.ts > $OUT/t1.log 2>&1
test_summary $? $OUT/t1.log
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,inv,inv+pp,inv+pc512,inv+pc512+pp,inv+pc256+pp --shapes"
S="16,32,8,16384;4,32,8,16384;16,32,8,4096;4,32,8,4096;1,32,8,4096"
[ $Q = 1 ] || S="$S;1,32,8,16384;16,32,32,4096;1,32,32,4096"
timeout 150 $A "$S" > $OUT/a1.txt 2>&1; echo "a1 rc=$?"
head -1 $OUT/a1.txt; grep -hE "µs:|max" $OUT/a1.txt | cut -c1-300
[ $Q = 1 ] && exit 0
rm -rf /tmp/pp && mkdir /tmp/pp && cp -r $(ls -A | grep -v '^.gpu$') /tmp/pp/ && ln -s $PWD/.gpu /tmp/pp/.gpu
sed -i 's/tuning.pairedPieces ?? false/tuning.pairedPieces ?? true/' /tmp/pp/backends/webgpu/attention/plan.ts
grep -c "pairedPieces ?? true" /tmp/pp/backends/webgpu/attention/plan.ts
B="deno run -A --lock=deno.lock bench/bench.ts --dtype f16 --d 128 --configs 1x32x8,4x32x8,16x32x8 --n 4k,16k,64k --algos lean,lean-invariant --no-peers --budget 60"
rm -rf /tmp/pp5 && cp -r /tmp/pp /tmp/pp5
sed -i 's/shortest: t.invariantPiece ?? DEFAULT_PIECE_RULE.shortest,/shortest: t.invariantPiece ?? 512,/' /tmp/pp5/backends/webgpu/attention/tuning.ts
grep -c "invariantPiece ?? 512" /tmp/pp5/backends/webgpu/attention/tuning.ts
(cd /tmp/pp5 && timeout 90 $B --out $OUT/bench-pp5) > $OUT/bench-pp5.txt 2>&1; echo "bench pp5 rc=$?"
grep -E "^B[0-9]" $OUT/bench-pp5.txt | cut -c1-110
rm -f $OUT/bench-pp5/*.svg
