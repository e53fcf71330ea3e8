#!/bin/bash
# Are some uniform rows slow because of where the workers' cuts land? (session 2026-12-07 (19),
# prepared without device time). In four H100 sweeps of 2026-12-07 lean's (1,32,32) row reaches
# 93 % of the ceiling at 64k (96.8 once) and 92-94 % at 256k (two parts of 128k keys), but 98 % at
# 512k (three parts of ~175k keys: the 256 workers' runs start at keys that are no power of two)
# and (1,64,64) 64k 98 %. cuDNN reads at 99-100 % on all of them. Hypothesis: 256 workers, each
# 8k or 16k keys of a unit, start in step on power-of-two strides and contend for the same DRAM
# channels; a grid that cuts at other offsets (255, 257, 264, 240) streams at 96-98 %. If the
# grids that cross units (264) or cut unevenly win by more than their crossing cost, the grid
# model (`cost_model.ts`, `MHA_CROSSING`) should say so. Also GQA (1,32,8) 16k / 64k (78 / 90 %).
# Run from the root with `run` carrying .gpu (about 3 minutes). File back: skew.txt.
# Result (2026-12-07 (20), bench/NOTES.md): 240/264/272 8 % faster than 256 at (1,32,32) 64k, but
# only with K/V drawn whole on the host; with tiled K/V (grid_mha.sh) 256 is as fast.
set -u
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants"
{
  timeout 100 $A def,g240,g255,g257,g264,g272 --shapes "1,32,32,65536;1,32,32,16384;1,64,64,65536"
  timeout 60 $A def,g255,g257,g264 --shapes "1,32,32,262144"
  timeout 60 $A def,g120,g132,g136,g144,g264 --shapes "1,32,8,16384;1,32,8,65536"
} > $OUT/skew.txt 2>&1
grep -hE "µs:|max" $OUT/skew.txt | cut -c1-200
