#!/bin/bash
# Session (29)'s first device call (run from the root with `run` carrying .gpu, give it 600 s),
# whichever card comes. On an H200: the remeasure without the ablation (#20 item 1's H200 half,
# the CPU bench on the host's cores after it). On an H100: the batch-invariance and piece-run bit
# tests at the 2049 bound of session (27) (about 60 s), then the CPU bench through the ops that
# use every core since session (28) (#20 item 4), then one lean thread against one ORT thread.
set -u
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader)
echo "$GPU"
if [[ "$GPU" == *H200* ]]; then
  ABLATE_S=0 TOTAL=${TOTAL:-560} bash bench/probes/remeasure.sh
  exit
fi
source bench/probes/_probe_env.sh
CI=true timeout ${T_S:-150} deno test -A --v8-flags=--expose-gc --lock=deno.lock \
  tests/batch_invariant_test.ts tests/piece_runs_test.ts tests/tuning_test.ts > /tmp/t1.log 2>&1
test_summary $? /tmp/t1.log
nproc
timeout ${C_S:-300} deno task bench --cpu --dtype f32 --n 16k,64k --configs 1x32x8,4x32x8 \
  --reps 7 --out $OUT/cpu > $OUT/cpu.log 2>&1
echo "cpu rc=$?"
rm -f $OUT/cpu/*.svg
# One lean thread against one ORT thread (the per-thread gap of sessions (22)/(25)).
for shape in 1,32,8,16384 4,32,8,16384; do
  timeout 60 deno run -A --lock=deno.lock bench/probes/cpu_parts.ts $shape 5 inThread,ort1 \
    >> $OUT/cpu_parts.txt 2>&1
done
# Tile size on this host's cores (64, the default, against 256: longer copies a tile).
for ts in 64 256 64 256; do
  timeout 40 deno run -A --lock=deno.lock bench/probes/cpu_parts.ts 1,32,8,16384 5 \
    inThread,workers "" "" $ts 2>&1 | tail -2 | sed "s/^/ts $ts /" >> $OUT/cpu_parts.txt
done
# A finer grid against the claimed split's tail (twice the cores, the default, vs 4× and 8×).
for shape in 1,32,8,65536 4,32,8,65536 4,32,8,16384; do
  timeout 60 deno run -A bench/probes/cpu_grid.ts $shape 2c,4c,8c 7 >> $OUT/cpu_parts.txt 2>&1
done
tail -24 $OUT/cpu_parts.txt
grep -hE "^(config|B[0-9])" $OUT/cpu.log | cut -c1-140
