#!/bin/bash
# Session (26): session (25)'s float8e4m3 workgroup bound on a GPU, and batch-invariant 256-key
# pieces on other grids. Run from the root with `run` carrying .gpu (about 200 s; T_S, Q_S,
# I_S limit the steps):
#  1. tests/quant_webgpu_test.ts (the bound: 384 threads on at most two workers a compute unit);
#  2. ablate, chained, `--check`, e4m3: the default against 256 and 384 threads where the grid
#     model gives 512 workers (B = 16) and where it gives 256/264;
#  3. ablate, chained, `--check`, float16 GQA 1k and 4k: lean, the invariant launch (512-key
#     pieces at 4k), 256-key pieces at the lean grid and at 256 and 512 workers. 256-key pieces
#     cost B = 4 +13 % at the lean grid of 128 (session 18); if a larger grid takes that back,
#     256 at 4k with its own grid rule would bring every 4k row under 10 %.
source bench/probes/_probe_env.sh
CI=true timeout ${T_S:-60} deno test -A --v8-flags=--expose-gc --lock=deno.lock \
  tests/quant_webgpu_test.ts > /tmp/t1.log 2>&1
test_summary $? /tmp/t1.log
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check"
S="16,32,32,4096;16,32,32,16384;4,32,32,16384;1,32,32,65536;1,64,64,16384"
timeout ${Q_S:-80} $A --variants def,wg256,wg384 --kv float8e4m3 --shapes "$S" \
  > $OUT/e4m3_wg.txt 2>&1
echo "e4m3 rc=$?"
S="1,32,8,4096;4,32,8,4096;16,32,8,4096;1,32,8,1024;4,32,8,1024"
timeout ${I_S:-70} $A --variants def,inv,inv+pc256,inv+pc256+g256,inv+pc256+g512 --shapes "$S" \
  > $OUT/inv_pieces.txt 2>&1
echo "pieces rc=$?"
grep -h "µs:" $OUT/e4m3_wg.txt $OUT/inv_pieces.txt | cut -c1-200
