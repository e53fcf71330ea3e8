#!/bin/bash
# int8 K/V after the unrolled merge (session 2026-12-07 (19)): the sweep after session (18)'s
# merge change had lean-int8 one-row (MHA) rows 19 % slower than before it and GQA int8 rows 4.5 %
# (float16 and e4m3 unchanged). Call 1 (ablate, chained): int8 (1,32,32) 64k 197.9 µs with the
# loops, 231.7 unrolled, 231.3 unrolled with each output's load in its add. So int8 kernels keep
# the loops now (`MergeSlots.unroll`; their WGSL is byte for byte that of a452d1b). This call:
#  1. ablate's lean on int8 shapes in this tree (`cand`) and in `head` (`.gpu/head_merge.ts` and
#     `.gpu/head_subgroup_kernel.ts`: those two files from `git show cfe7a9d:…`);
#  2. the GPU bit tests of the quantized kernels and merges in this tree;
#  3. float16 one-row shapes at 16k-64k in this tree and with the loops everywhere (`old`:
#     `.gpu/old_merge.ts` = `git show a452d1b:backends/webgpu/attention/_wgsl_merge.ts`).
# Run from the root with `run` carrying .gpu (about 7 minutes). Files back: merge.txt, tests.txt.
# Ran on an H100 on 2026-12-07 (results/probes/h100-2026-12-07-merge-int8/call2-*): int8 (1,32,32)
# 64k 190.2 µs (cand) against 225.9 (head), (1,32,8) 64k 86.5 / 87.8; the (4,32,32) 16k shape ran
# out of its 90 s; the tests passed; float16 (1,32,32) 64k 386.8 unrolled, 387.9 with the loops.
set -u
source bench/probes/_test_summary.sh
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
for t in old head; do
  rm -rf /tmp/$t && mkdir -p /tmp/$t && cp -r $(ls -A | grep -v '^.gpu$') /tmp/$t/
  ln -s $PWD/.gpu /tmp/$t/.gpu
done
cp .gpu/old_merge.ts /tmp/old/backends/webgpu/attention/_wgsl_merge.ts
cp .gpu/head_merge.ts /tmp/head/backends/webgpu/attention/_wgsl_merge.ts
cp .gpu/head_subgroup_kernel.ts /tmp/head/backends/webgpu/attention/subgroup_kernel.ts
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def --shapes"
Q="1,32,32,65536;1,32,8,65536;4,32,32,16384"
for t in cand head; do
  d=.; [ $t != cand ] && d=/tmp/$t
  echo "== $t int8" >> $OUT/merge.txt
  (cd $d && timeout 90 $A "$Q" --kv int8) >> $OUT/merge.txt 2>&1
done
grep -hE "^==|µs:|differs" $OUT/merge.txt | cut -c1-130
T="quant_webgpu piece_runs batch_invariant webgpu_fused_merge determinism"
timeout 170 deno test -A --v8-flags=--expose-gc --lock=deno.lock \
  $(for t in $T; do echo tests/${t}_test.ts; done) > /tmp/t.log 2>&1
test_summary $? /tmp/t.log | grep -vE "^ok \|" | head -20
F="1,32,32,65536;4,32,32,16384"
for t in cand old; do
  d=.; [ $t != cand ] && d=/tmp/$t
  echo "== $t f16" >> $OUT/merge.txt
  (cd $d && timeout 45 $A "$F") >> $OUT/merge.txt 2>&1
done
grep -hE "^==|µs:|differs" $OUT/merge.txt | cut -c1-130
