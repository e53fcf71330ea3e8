#!/bin/bash
# The open issues' numbers in one device call (session 2026-12-07 (16) prepared it and found no
# device): run from the root with `run` carrying .gpu, `bash bench/probes/remeasure.sh` (about 8
# minutes; give the call its 600 s). By priority, each step under its own time limit, so a slow
# step cannot cost the ones after it:
#  1. `invariant_wg.sh` (#20 item 3: 128-thread invariant workgroups, about 90 s);
#  2. the headline sweep, float16 D = 128, with the torch peer, the invariant and quantized columns
#     (#20 items 1 and 3, #17): the JSON and the log in $OUT/h and $OUT/bench.log;
#  3. the CPU bench on this host's cores against ONNX Runtime native (#20 item 4), if time is left.
# At most 8 files come back: wg.txt, bench.log, cpu.log and the two JSON files. TOTAL (seconds,
# default 570) scales the steps for a shorter call: ablate 26 %, the sweep 63 % (its torch peer
# half of that), the CPU bench whatever is left over 100 s; ABLATE_S=0 skips step 1. ALGOS
# overrides the sweep's algorithms; SHAPES, VARIANTS pass to invariant_wg.sh.
set -u
TOTAL=${TOTAL:-570}
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
ABLATE_S=${ABLATE_S:-$((TOTAL * 26 / 100))}
# ABLATE_S=0 skips step 1 (`timeout 0` would mean no limit at all).
if [ "$ABLATE_S" -gt 0 ]; then ABLATE_S=$ABLATE_S bash bench/probes/invariant_wg.sh; fi
A=lean,lean-invariant,lean-int8,lean-float8e4m3,flash,flash-decoding,naive,ort-webgpu
ALGOS=${ALGOS:-$A,torch-cudnn,torch-flash,torch-efficient,torch-ragged}
BS=$((TOTAL * 63 / 100))
timeout $BS deno task bench --dtype f16 --d 128 --algos $ALGOS --budget $((BS * 61 / 100)) \
  --torch-budget $((BS * 30 / 100)) \
  --out $OUT/h > $OUT/bench.log 2>&1
echo "bench rc=$?"
rm -f $OUT/h/*.svg
LEFT=$((TOTAL - SECONDS))
if [ $LEFT -gt 100 ]; then
  timeout $LEFT deno task bench --cpu --dtype f32 --n 16k,64k --configs 1x32x8,4x32x8 --reps 7 \
    --out $OUT/cpu > $OUT/cpu.log 2>&1
  echo "cpu rc=$?"
  rm -f $OUT/cpu/*.svg
else
  echo "cpu skipped: ${LEFT} s left"
fi
grep -hE "^(config|B[0-9])" $OUT/bench.log | cut -c1-120 | tail -60
grep -hE "^(config|B[0-9])" $OUT/cpu.log 2>/dev/null | cut -c1-120
