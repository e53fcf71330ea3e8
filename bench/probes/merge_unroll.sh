#!/bin/bash
# The subgroups' merge unrolled where every slot holds a state (session 2026-12-07 (18),
# `_wgsl_merge.ts`): `merge_nan_probe.ts` (D = 32 piece runs, which gave NaN with the unrolled merge
# under `if (act)`), the GPU tests of the merges and kernels, then ablate's lean and lean-invariant
# in this tree (new) and in a copy with the loops (old, `.gpu/old_merge.ts`: `git show
# <old commit>:backends/webgpu/attention/_wgsl_merge.ts > .gpu/old_merge.ts` before the call),
# ROUNDS times (default 1). Run from the root with `run` carrying .gpu (about 5 minutes).
set -u
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 40 deno run -A --lock=deno.lock bench/probes/merge_nan_probe.ts 2>&1 | grep -v "│\|╭\|╰" \
  > $OUT/nan.txt
grep -c "NaN at [0-9]" $OUT/nan.txt | sed 's/^/probe lines with NaN: /'
T="piece_runs batch_invariant webgpu_fused_merge determinism extreme_values attention"
T="$T webgpu_variants quant_webgpu paged_webgpu"
timeout 200 deno test -A --lock=deno.lock $(for t in $T; do echo tests/${t}_test.ts; done) \
  > $OUT/tests.log 2>&1
echo "tests rc=$?: $(grep -E "passed|failed" $OUT/tests.log | tail -1)"
grep -E "FAILED|Caused by|AssertionError" $OUT/tests.log | head -5 | cut -c1-200
OLD=/tmp/old
rm -rf $OLD && mkdir -p $OLD && cp -r . $OLD/ 2>/dev/null
cp .gpu/old_merge.ts $OLD/backends/webgpu/attention/_wgsl_merge.ts
S="1,32,8,1024;4,32,8,1024;16,32,8,1024;1,32,8,4096;16,32,8,4096;1,32,32,1024"
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,inv --shapes $S"
for round in $(seq 1 ${ROUNDS:-1}); do
  for t in old new; do
    d=.; [ $t = old ] && d=$OLD
    echo "== $t round $round" >> $OUT/merge.txt
    (cd $d && timeout 60 $A) >> $OUT/merge.txt 2>&1
  done
done
grep -hE "^==|µs:|differs" $OUT/merge.txt | cut -c1-150
