#!/bin/bash
# Where the fold order's cost goes (session 2026-12-06 (12)): ablate's fold tokens (`onep` one
# piece a run, `nomg` no merger, `nopub` no publications; results wrong) against lean and the
# piece-by-piece order. Run from the root with `run` carrying .gpu:
# `bash bench/probes/fold_order_parts.sh`.
set -u
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,inv,inv+sf,inv+sf+onep,inv+sf+nomg,inv+sf+nopub,inv+sf+nomg+nopub --shapes"
timeout 100 $A "16,32,8,16384;4,32,8,16384" > $OUT/parts1.txt 2>&1; echo "parts1 rc=$?"
timeout 60 $A "1,32,8,4096" > $OUT/parts2.txt 2>&1; echo "parts2 rc=$?"
head -1 $OUT/parts1.txt; grep -hE "µs:|max|rror" $OUT/parts1.txt $OUT/parts2.txt | cut -c1-330
