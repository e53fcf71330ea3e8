#!/bin/bash
# The subgroup-fold order (AttentionTuning.foldOrder) on a GPU, steps by priority (session 2026-12-06 (11); never run):
# run from the root with `run` carrying .gpu (../shared/gpu/bundle.sh): the sf tests on the GPU, then
# ablate def (lean) / inv+sf (fold order) / inv (piece by piece) at three GQA shapes, then more shapes, then the shortest piece 256.
set -u
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
CI=true timeout 60 $T tests/batch_invariant_test.ts tests/determinism_test.ts > $OUT/t1.log 2>&1; echo "tests1 rc=$?" > $OUT/tests.txt
grep -h -A12 "FAILED\|rror:" $OUT/t1.log | grep -v "^\s*at " | head -40 >> $OUT/tests.txt; grep -E "^(ok|FAILED) \||seed|information" $OUT/t1.log >> $OUT/tests.txt
cat $OUT/tests.txt
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,inv+sf,inv --shapes"
timeout 70 $A "16,32,8,16384;4,32,8,16384;1,32,8,4096" > $OUT/sf.txt 2>&1; echo "sf rc=$?"
grep -E "µs:|max" $OUT/sf.txt | cut -c1-300; grep -i error $OUT/sf.txt | head -3; head -1 $OUT/sf.txt
CI=true timeout 60 $T tests/webgpu_fused_merge_test.ts tests/attention_test.ts > $OUT/t2.log 2>&1; echo "tests2 rc=$?"; grep -E "^(ok|FAILED) \|" $OUT/t2.log
timeout 50 $A "16,32,8,4096;4,32,8,4096" > $OUT/sf2.txt 2>&1; echo "sf2 rc=$?"
grep -E "µs:|max" $OUT/sf2.txt | cut -c1-300
rm -rf /tmp/r256 && mkdir /tmp/r256 && cp -r $(ls -A | grep -v '^.gpu$') /tmp/r256/ && ln -s $PWD/.gpu /tmp/r256/.gpu
sed -i 's/INVARIANT_CHUNK_KEYS = 1024;/INVARIANT_CHUNK_KEYS = 256;/' /tmp/r256/schedule/limits.ts
(cd /tmp/r256 && grep -n "INVARIANT_CHUNK_KEYS = " schedule/limits.ts && timeout 60 $A "1,32,8,4096;4,32,8,4096;16,32,8,4096") > $OUT/sf-r256.txt 2>&1; echo "r256 rc=$?"
grep -E "INVARIANT|µs:|max" $OUT/sf-r256.txt | cut -c1-300
