#!/bin/bash
# The cost model's in-step rule (session (22), cost_model.ts IN_STEP): one-row runs of 2 MiB or more
# that would all start in step now take the base grid (264 on an H100) instead of the units'
# multiple (256, or 512 one a unit). Run from the root with `run` carrying .gpu (about 300 s):
#  1. kv_pairs.ts over 9 pairs of K/V buffers on the rows whose grid changed, at 256, 264, 512;
#  2. ablate, chained, `--check`: the quantized GQA-4 workgroup rule (def against wg256, wg384)
#     around its 4,096-keys-a-worker threshold, int8 and float8e4m3 (QUANT=0 skips it);
#  3. lean (the new default grid) and the cuDNN peer on the multi-head rows at 64k and 256k.
set -u
source .gpu/setup.sh > $OUT/run.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
P="deno run -A --lock=deno.lock bench/probes/kv_pairs.ts"
S="1,32,32,131072;4,32,32,16384;8,32,32,16384;16,32,32,8192;1,64,64,32768"
timeout ${P_S:-150} $P "$S" 256,264,512 3 > $OUT/pairs.txt 2>&1; echo "pairs rc=$?"
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check --variants def,wg256,wg384 --shapes"
Q="1,32,8,16384;1,32,8,65536;4,32,8,65536;1,32,8,262144"
if [ "${QUANT:-1}" = 1 ]; then
  {
    timeout 50 $A "$Q" --kv int8
    timeout 50 $A "$Q" --kv float8e4m3
  } > $OUT/quant.txt 2>&1
  echo "quant rc=$?"
fi
timeout 100 deno task bench --dtype f16 --d 128 --configs 1x32x32,1x64x64,4x32x32 --n 64k,256k \
  --algos lean,torch-cudnn --budget 45 --torch-budget 45 --out $OUT/b > $OUT/bench.log 2>&1
echo "bench rc=$?"
rm -f $OUT/b/*.svg
head -1 $OUT/pairs.txt; grep -hi "error" $OUT/pairs.txt $OUT/quant.txt 2>/dev/null | head -3
grep -hE "µs over|min" $OUT/pairs.txt
grep -hE "µs:" $OUT/quant.txt 2>/dev/null | cut -c1-200
grep -hE "^B[0-9].*(lean|cudnn) " $OUT/bench.log | cut -c1-100
