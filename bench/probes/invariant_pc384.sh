#!/bin/bash
# Session (26): batch-invariant GQA units of 2,048 to 8,191 keys in 384-key pieces (a multiple of
# the key batch, not a power of two; `MULTI_ROW_SHORT_UNITS` in tuning.ts) against 512 (the rule
# before, `inv+pc512` here at these lengths) and 256. At 4k, 512-key pieces give B = 1 only 64
# pieces for 128 workers (+13 %), 256-key pieces cost B = 4 three piece ends a worker (+14 %);
# 384 gives 88 pieces and about two ends a worker. Run from the root with `run` carrying .gpu
# (about 100 s): `ablate.ts --check`, chained (4k rows twice), then the batch-invariance tests
# (their property draws lengths up to 9,000, so the 384-key pieces too). The rule was not kept
# (slower at B = 4, no faster at B = 1: bench/NOTES.md, session (26)); to run it again apply
# results/probes/h100-2026-12-08-invariant-pc384/rule.patch (list-valued `shortUnits`).
source bench/probes/_probe_env.sh
A="deno run -A --lock=deno.lock bench/probes/ablate.ts --check"
S4="1,32,8,4096;4,32,8,4096;16,32,8,4096"
S="$S4;1,32,8,2048;4,32,8,2048;16,32,8,2048;1,32,8,6144;4,32,8,6144;$S4"
timeout ${I_S:-60} $A --variants def,inv,inv+pc512,inv+pc256 --shapes "$S" > $OUT/pc384.txt 2>&1
echo "pc384 rc=$?"
CI=true timeout ${T_S:-80} deno test -A --v8-flags=--expose-gc --lock=deno.lock \
  tests/batch_invariant_test.ts > /tmp/t1.log 2>&1
test_summary $? /tmp/t1.log
grep -h "µs:" $OUT/pc384.txt | cut -c1-200
