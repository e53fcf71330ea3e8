#!/bin/bash
# Batch-invariant decode in 512- and 1024-thread workgroups (session 2026-12-07 (21)). At 1k keys
# a one-row invariant unit is one piece, so at B = 1 only B·Hq workgroups stream (32 at
# (1,32,32)) and each pulls 512 KB with 256 threads' loads in flight: +13–16 % over lean in runs
# 4–5. Wider workgroups put 2–4× the loads in flight a unit; at B = 16 the multiprocessors hold
# as many threads either way, so the cost there may stay flat. The workgroup size sets the bits,
# so a rule must take it for every batch and length of a launch: hence the long and wide rows.
# Run from the root with `run` carrying .gpu (about 100 s):
# `bash bench/probes/invariant_wide_wg.sh`; ablate, chained, `--check` (every variant against
# flash). ABLATE_S limits the ablation (default 150 s).
set -u
export VARIANTS=${VARIANTS:-def,inv,inv+wg512,inv+wg1024}
M="1,32,32,1024;4,32,32,1024;16,32,32,1024;1,64,64,1024;1,32,32,4096;16,32,32,4096"
M="$M;1,32,32,16384;1,32,32,65536" # (16,32,32) 16k: K/V in two parts, refused
G="1,32,8,1024;4,32,8,1024;16,32,8,1024;1,32,8,4096;16,32,8,4096"
export SHAPES=${SHAPES:-"$M;$G"}
bash bench/probes/invariant_wg.sh
