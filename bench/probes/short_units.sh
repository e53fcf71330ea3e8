#!/bin/bash
# Batch-invariant pieces of short units (session 2026-12-07 (17) prepared it; bench/NOTES.md):
# multi-row units under 2048 keys now take 256-key pieces, measured at 1k only. Run from the root
# with `run` carrying .gpu: `bash bench/probes/short_units.sh` (about 4 minutes).
#  1. ablate, chained, cost over lean (`def`): today's rule (`inv`) against explicit shortest
#     pieces (`pc`, no short-unit exception) at 512 and 2k GQA units (the lengths the rule moved or
#     left untimed) and at 1k one-row units (one piece each today: 32 or 64 workers stream);
#  2. the bench's lean and lean-invariant columns at 1k, 2k and 4k: the rule's cost in a sweep.
# Files back: su.txt, sweep.log and the sweep's JSON.
set -u
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants"
GQA="1,32,8,512;4,32,8,512;16,32,8,512;1,32,8,2048;4,32,8,2048;16,32,8,2048"
MHA="1,32,32,1024;4,32,32,1024;16,32,32,1024"
{
  timeout 100 $A def,inv,inv+pc128,inv+pc256,inv+pc512 --shapes "$GQA"
  timeout 80 $A def,inv,inv+pc256,inv+pc512,inv+pc1024 --shapes "$MHA"
} > $OUT/su.txt 2>&1
echo "ablate done"
timeout 150 deno task bench --dtype f16 --d 128 --configs 1x32x8,4x32x8,16x32x8,1x32x32,16x32x32 \
  --n 1k,2k,4k --algos lean,lean-invariant --no-peers --out $OUT/s > $OUT/sweep.log 2>&1
echo "sweep rc=$?"
rm -f $OUT/s/*.svg
head -1 $OUT/su.txt
grep -hE "µs:" $OUT/su.txt | cut -c1-200
grep -hE "^\[" $OUT/sweep.log | cut -c1-160
