#!/bin/bash
# Follow-up of grid_skew.sh (session 2026-12-07 (20)): on an H100, (1,32,32) 64k took 396.6 µs on
# its default 256 workers (8 runs a unit, each 8k keys: power-of-two strides) but 363.0 on 240 and
# 365.4 on 264 (runs that cross units), while 255 and 257 (starts that drift only slowly off the
# 8k grid) took 379-380. Which multi-head rows of the sweep gain from a grid whose runs do not start
# in step, and does any lose? Shapes: the multi-head sweep rows at N >= 64k and two 16k rows.
# (The first try timed out after one shape: ablate.ts drew K/V on the host, ≈ 40 s a gigabyte.)
# Then the cuDNN peer on the 64k and 256k rows, lean beside it. Run from the root with `run`
# carrying .gpu (about 5 minutes). Files back: mha.txt, bench.log, the bench JSON.
# Result (2026-12-07 (20), bench/NOTES.md): no grid more than 1.4 % faster than the default on
# any row; the 396 µs of grid_skew.sh came with whole-drawn K/V (kv_placement.ts asks why).
set -u
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --variants"
V=def,g240,g248,g264
{
  timeout 70 $A $V --shapes "1,32,32,65536;1,64,64,65536;4,32,32,65536;16,32,32,65536"
  timeout 70 $A $V --shapes "1,32,32,262144;1,64,64,262144;4,32,32,262144;1,32,32,524288"
  timeout 25 $A $V --shapes "1,32,32,16384;4,32,32,16384"
} > $OUT/mha.txt 2>&1
# The same rows' cuDNN peer in this call (lean at its default grid beside it).
timeout 90 deno task bench --dtype f16 --d 128 --configs 1x32x32,1x64x64,4x32x32 --n 64k,256k \
  --algos lean,torch-cudnn --budget 40 --torch-budget 40 --out $OUT/b > $OUT/bench.log 2>&1
rm -f $OUT/b/*.svg
grep -hE "µs:" $OUT/mha.txt | cut -c1-200
grep -hE "^B[0-9].*(lean|cudnn) " $OUT/bench.log | cut -c1-100
