#!/bin/bash
# Where a batch-invariant GQA launch's cost at short units comes from (session 2026-12-07 (18)):
# the invariant launch picks its kernel as for one worker of 2048 keys (plan.ts,
# INVARIANT_CONFIG_KEYS: 8 keys a slot, prefetch on) while lean at ≤ 1024 keys a worker takes 4
# keys a slot without prefetch (tuning.ts, SHORT_GQA_KEYS). ablate, chained, µs: lean (`def`),
# the invariant launch (`inv`) and it with 4 keys a slot and/or prefetch off, from 1k to 64k.
# Run from the root with `run` carrying .gpu: `bash bench/probes/invariant_u.sh` (about 90 s).
set -u
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
S="1,32,8,1024;4,32,8,1024;16,32,8,1024;1,32,8,4096;4,32,8,4096;16,32,8,4096;16,32,8,16384"
S="$S;4,32,8,65536"
timeout 200 deno run -A --lock=deno.lock bench/probes/ablate.ts --check \
  --variants def,inv,inv+U4,inv+pf0,inv+U4+pf0,inv+U4+pf --shapes "$S" > $OUT/u.txt 2>&1
echo "ablate rc=$?"
head -1 $OUT/u.txt
grep -hE "µs:" $OUT/u.txt | cut -c1-200
