#!/bin/bash
# The subgroup-fold order (AttentionTuning.foldOrder) and the shortest piece (invariantPiece) on
# a GPU, by priority (sessions 2026-12-06 (11)–(12)): run from the root with `run` carrying .gpu
# (../shared/gpu/bundle.sh): `bash bench/probes/fold_order_check.sh`.
#  1. the batch-invariant and determinism tests (they draw the order and the piece);
#  2. ablate: lean (def), piece by piece (inv), fold order (inv+sf), fold order with 256-key
#     shortest pieces (inv+sf+pc256) and with 128-key pieces, at most 32 a unit
#     (inv+sf+pc128+pn32), at the GQA headline shapes, then (16,32,32) 4k;
#  3. the bench's lean and lean-invariant rows with the fold order and 128-key pieces (at most
#     32) as defaults for multi-row units (a /tmp copy);
#  4. the fused-merge and attention tests.
set -u
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
CI=true timeout 75 $T tests/batch_invariant_test.ts tests/determinism_test.ts > $OUT/t1.log 2>&1; echo "tests1 rc=$?" > $OUT/tests.txt
grep -h -A12 "FAILED\|rror:" $OUT/t1.log | grep -v "^\s*at " | head -40 >> $OUT/tests.txt; grep -E "^(ok|FAILED) \||seed|information" $OUT/t1.log >> $OUT/tests.txt
cat $OUT/tests.txt
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,inv,inv+sf,inv+sf+pc256,inv+sf+pc128+pn32 --shapes"
timeout 120 $A "16,32,8,16384;4,32,8,16384;1,32,8,4096" > $OUT/sf.txt 2>&1; echo "sf rc=$?"
grep -E "µs:|max" $OUT/sf.txt | cut -c1-300; grep -i error $OUT/sf.txt | head -3; head -1 $OUT/sf.txt
timeout 110 $A "16,32,8,4096;4,32,8,4096;16,32,32,4096" > $OUT/sf2.txt 2>&1; echo "sf2 rc=$?"
grep -E "µs:|max" $OUT/sf2.txt | cut -c1-300
rm -rf /tmp/fo && mkdir /tmp/fo && cp -r $(ls -A | grep -v '^.gpu$') /tmp/fo/ && ln -s $PWD/.gpu /tmp/fo/.gpu
sed -i 's/tuning.foldOrder ?? false/tuning.foldOrder ?? true/' /tmp/fo/backends/webgpu/attention/plan.ts
sed -i 's/shortest: t.invariantPiece ?? DEFAULT_PIECE_RULE.shortest,/shortest: t.invariantPiece ?? (_unitRows >= 2 ? 128 : 1024),/; s/most: t.invariantPieces ?? DEFAULT_PIECE_RULE.most,/most: t.invariantPieces ?? (_unitRows >= 2 ? 32 : 16),/' /tmp/fo/backends/webgpu/attention/tuning.ts
(cd /tmp/fo && grep -c "foldOrder ?? true" backends/webgpu/attention/plan.ts && grep -c "? 128 : 1024\|? 32 : 16" backends/webgpu/attention/tuning.ts && timeout 170 deno run -A --lock=deno.lock bench/bench.ts --dtype f16 --d 128 --configs 1x32x8,4x32x8,16x32x8 --n 4k,16k,64k --algos lean,lean-invariant --no-peers --out $OUT/bench-fo) > $OUT/bench-fo.txt 2>&1; echo "bench-fo rc=$?"
tail -22 $OUT/bench-fo.txt | cut -c1-200
CI=true timeout 60 $T tests/webgpu_fused_merge_test.ts tests/attention_test.ts > $OUT/t2.log 2>&1; echo "tests2 rc=$?"; grep -E "^(ok|FAILED) \|" $OUT/t2.log | grep -c "^ok"; grep FAILED $OUT/t2.log | head
