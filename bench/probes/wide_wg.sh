#!/bin/bash
# Decode in 320-, 384- and 448-thread workgroups, GQA by default (session 2026-12-07 (21)). The GQA
# kernel runs one 256-thread workgroup a multiprocessor (8 warps, 2 a scheduler) and its key loop is
# issue- and latency-bound (bench/NOTES.md: without DRAM the loop takes 55 % of the float16 call;
# int8 0.72–0.81× float16). wg 512 caps a thread at 128 registers and lost 30–50 %; wg 128 gave
# no more warps. A workgroup of 384 threads caps a thread at 170 registers: if the kernel fits, 12
# warps hide more latency at the same grid; if not, it spills. Needs `wg` not restricted to powers
# of two (tuning.ts). Run from the root with `run` carrying .gpu (about 100 s): `bash
# bench/probes/wide_wg.sh`; ablate, chained, `--check`. VARIANTS, SHAPES and OUT_TAG (a suffix of
# the output files) override the defaults; L1=0 skips the loop without DRAM.
set -u
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
V=${VARIANTS:-def,wg320,wg384,wg448,wg384+pf0}
S=${SHAPES:-"1,32,8,16384;1,32,8,65536;4,32,8,65536;1,32,8,262144"}
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --variants $V --shapes"
F=$OUT/wide_wg${OUT_TAG:-}
timeout ${WG_S:-80} $A "$S" --check > $F.txt 2>&1; echo "f16 rc=$?"
timeout ${WG_S:-80} $A "$S" --check --kv int8 > ${F}_int8.txt 2>&1; echo "int8 rc=$?"
[ "${L1:-1}" = 0 ] && exec grep -hE "µs:|max" $F.txt ${F}_int8.txt
# The loop without DRAM (`l1`, unchained: its outputs are garbage): does wg 384 issue faster?
L="deno run -A --lock=deno.lock bench/probes/ablate.ts --unchained --variants def,l1,wg384,wg384+l1"
timeout ${WG_S:-80} $L --shapes "1,32,8,262144" > $OUT/wide_wg_l1.txt 2>&1; echo "l1 rc=$?"
grep -hE "µs:|max" $F.txt ${F}_int8.txt $OUT/wide_wg_l1.txt | cut -c1-300
