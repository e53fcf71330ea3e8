#!/bin/bash
# Multi-head decode with more warps in flight (session (23), #17's int8 (1,32,32) 64k at 1.74× of
# cuDNN against 1.8, e4m3 multi-head at 83–89 % of the ceiling; #20 item 1's multi-head rows at
# 0.96–0.97× cuDNN): the default against grids 256 and 264 (the cost model counts quantized K/V
# as 4 bytes an element), three and four workgroups a multiprocessor (g396, g528), 384- and
# 512-thread workgroups (wg384, wg512) and prefetch (pf), chained,
# `--check`, then (CPU=0 skips it) one lean CPU thread against one ORT thread. Run from the root
# with `run` carrying .gpu (about 260 s); Q_S / F_S limit each step; SHAPES, VARIANTS, KVS and
# CPU_SHAPES narrow it.
set -u
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --shapes"
S=${SHAPES:-"1,32,32,65536;1,64,64,65536;1,32,32,131072;1,64,64,16384"}
V=${VARIANTS:-def,g256,g264,g396,g528,wg384,wg512,pf}
# KVS: the K/V formats to run (float16 is "f16").
for kv in ${KVS:-int8 float8e4m3 f16}; do
  if [ $kv = f16 ]; then F=""; T=${F_S:-60}; else F="--kv $kv"; T=${Q_S:-70}; fi
  timeout $T $A "$S" --variants $V $F > $OUT/mha_$kv.txt 2>&1; echo "$kv rc=$?"
done
date -u >> $OUT/date.txt
head -1 $OUT/mha_*.txt | head -2; grep -hi "error" $OUT/mha_*.txt | head -3
grep -hE "µs:|max" $OUT/mha_*.txt | cut -c1-200
# The CPU kernels of session (23) on this host: one lean thread against one ORT thread.
if [ "${CPU:-1}" = 1 ]; then
  for s in ${CPU_SHAPES:-1,32,8,16384 4,32,8,16384}; do
    timeout 60 deno run -A --lock=deno.lock bench/probes/cpu_parts.ts $s 5 inThread,ort1 \
      >> $OUT/cpu_parts.txt 2>&1
  done
  tail -8 $OUT/cpu_parts.txt
fi
