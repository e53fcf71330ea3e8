#!/bin/bash
# Quantized GQA-4 decode in 384-thread workgroups by default (QUANT_GQA_WG, session (22)) on a GPU,
# and where K/V lie (kv_pairs.ts). Run from the root with `run` carrying .gpu (about 330 s):
#  1. the tests whose launches the default reaches (quantized, paged, fused merge, invariance);
#  2. ablate, chained, `--check`: the new default (def) against 256 threads (wg256), int8 and
#     float8e4m3, GQA-4 from 1k to 64k keys;
#  3. kv_pairs.ts: grids over 16 pairs of K/V buffers, multi-head and GQA.
set -u
source bench/probes/_test_summary.sh
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
CI=true timeout 200 $T tests/quant_webgpu_test.ts tests/quant_attention_test.ts \
  tests/quant_cache_test.ts tests/paged_webgpu_test.ts tests/webgpu_fused_merge_test.ts \
  tests/batch_invariant_test.ts tests/determinism_test.ts tests/tuning_test.ts > $OUT/t1.log 2>&1
test_summary $? $OUT/t1.log
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,wg256 --shapes"
S="1,32,8,1024;1,32,8,4096;1,32,8,16384;1,32,8,65536;4,32,8,1024;4,32,8,4096;4,32,8,16384"
S="$S;4,32,8,65536;16,32,8,4096"
timeout ${Q_S:-60} $A "$S" --kv int8 > $OUT/q_int8.txt 2>&1; echo "int8 rc=$?"
timeout ${Q_S:-60} $A "$S" --kv float8e4m3 > $OUT/q_e4m3.txt 2>&1; echo "e4m3 rc=$?"
P="deno run -A --lock=deno.lock bench/probes/kv_pairs.ts"
timeout ${P_S:-100} $P "1,32,32,65536;1,32,32,16384;1,64,64,65536" 0,240,264 4 > $OUT/pairs.txt 2>&1
echo "pairs rc=$?"
timeout ${P_S:-100} $P "1,32,8,65536;4,32,8,65536" 0,120,124 4 >> $OUT/pairs.txt 2>&1
echo "pairs gqa rc=$?"
head -1 $OUT/q_int8.txt; grep -hi "error" $OUT/q_int8.txt $OUT/q_e4m3.txt $OUT/pairs.txt | head -3
grep -hE "µs:|max" $OUT/q_int8.txt $OUT/q_e4m3.txt | cut -c1-200
grep -hE "µs over|min" $OUT/pairs.txt
