#!/bin/bash
# Session (24)'s two quantized multi-head defaults on a GPU: the grid model counting quantized
# K/V at their stored bytes (256 workers for int8/e4m3 (1,32,32) 64k, (4,32,32) 16k, (1,64,64)
# 16k; 128 for the 1k rows on an H100) and float8e4m3 one-row decode in 384 threads past 2,048
# keys a worker (QUANT_E4M3_MHA_WG). Run from the root with `run` carrying .gpu (about 250 s;
# T_S, Q_S, B_S limit the steps, CPU_R the CPU alternations):
#  1. the tests these defaults reach (quantized, paged, grid model, invariance);
#  2. ablate, chained, `--check`: the default against grids 128, 256, 264 and (e4m3) 256 threads,
#     multi-head from 1k to 64k keys;
#  3. the bench rows of #17 (lean float16, int8, e4m3 and the torch cuDNN float16 peer);
#  4. one lean CPU thread against one ORT thread on this host (#20 item 4), the loops of now and
#     of before session (23) alternating.
# Setup output stays off $OUT (_probe_env.sh): at most 8 files come back (the bench JSON is the
# eighth).
source bench/probes/_probe_env.sh
T="deno test -A --v8-flags=--expose-gc --lock=deno.lock"
CI=true timeout ${T_S:-120} $T tests/quant_webgpu_test.ts tests/quant_attention_test.ts \
  tests/quant_cache_test.ts tests/paged_webgpu_test.ts tests/lean_grid_test.ts \
  tests/batch_invariant_test.ts > $OUT/t1.log 2>&1
test_summary $? $OUT/t1.log
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,g128,g256,g264"
S="1,32,32,1024;4,32,32,1024;1,64,64,1024;1,32,32,4096;4,32,32,4096;16,32,32,4096"
S="$S;1,32,32,16384;1,64,64,16384;4,32,32,16384;16,32,32,16384;1,32,32,65536"
timeout ${Q_S:-50} $A --shapes "$S" --kv int8 > $OUT/q_int8.txt 2>&1; echo "int8 rc=$?"
timeout ${Q_S:-50} $A,wg256 --shapes "$S" --kv float8e4m3 > $OUT/q_e4m3.txt 2>&1
echo "e4m3 rc=$?"
timeout ${B_S:-100} deno task bench --dtype f16 --d 128 --configs 1x32x8,4x32x8,1x32x32,1x64x64,4x32x32 \
  --n 16k,64k,256k --algos lean,lean-int8,lean-float8e4m3,torch-cudnn --budget 60 \
  --torch-budget 35 --out $OUT/b > $OUT/bench.log 2>&1
echo "bench rc=$?"
rm -f $OUT/b/*.svg
# The CPU loops before session (23) (a tree of commit 4735b13 in .gpu/oldtree, where present)
# and now, alternating CPU_R times (default 2; 0 skips it).
C="deno run -A --lock=deno.lock bench/probes/cpu_parts.ts"
for s in 1,32,8,16384 4,32,8,16384; do
  for r in $(seq ${CPU_R:-2}); do
    echo "now $s" >> $OUT/cpu_parts.txt
    timeout 40 $C $s 5 inThread,ort1 >> $OUT/cpu_parts.txt 2>&1
    [ -d .gpu/oldtree ] || continue
    echo "before (23) $s" >> $OUT/cpu_parts.txt
    (cd .gpu/oldtree && timeout 40 $C $s 5 inThread,ort1 >> $OUT/cpu_parts.txt 2>&1)
  done
done
head -1 $OUT/q_int8.txt; grep -hi "error" $OUT/q_int8.txt $OUT/q_e4m3.txt | head -3
grep -hE "µs:" $OUT/q_int8.txt $OUT/q_e4m3.txt | cut -c1-160
grep -hE "^(config|B[0-9])" $OUT/bench.log | cut -c1-120 | tail -30
grep -hE "^(now|before)|/ ort1" $OUT/cpu_parts.txt
