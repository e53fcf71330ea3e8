#!/bin/bash
# Batch-invariant decode in 128-thread workgroups (session 2026-12-07 (16)): a piece's end costs
# the wait of its subgroups at the merge barrier (bench/NOTES.md, session (14)); with four
# subgroups a workgroup instead of eight the wait is for fewer, and with two workgroups a
# multiprocessor the other streams while one waits. Run from the root with `run` carrying .gpu:
# `bash bench/probes/invariant_wg.sh` (about 90 s): ablate, chained, cost over lean (`def`), the
# invariant launch at the default 256 threads (`inv`) and at 128 with the default grid, 256 and
# 264 workers, and with 256-key pieces. SHAPES, VARIANTS and ABLATE_S override the defaults.
set -u
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
V="def,wg128,wg128+g264,inv,inv+wg128,inv+wg128+g256,inv+wg128+g264,inv+wg128+pc256"
V=${VARIANTS:-$V,inv+wg128+pc256+g264}
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants $V --shapes"
S=${SHAPES:-"16,32,8,16384;4,32,8,16384;16,32,8,4096;4,32,8,4096;1,32,8,4096"}
timeout ${ABLATE_S:-150} $A "$S" > $OUT/wg.txt 2>&1; echo "wg rc=$?"
head -1 $OUT/wg.txt; grep -hE "µs:|max" $OUT/wg.txt | cut -c1-300
