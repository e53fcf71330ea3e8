#!/bin/bash
# Session (27): a candidate rule, multi-row units of at most 3072 keys in 256-key batch-invariant
# pieces (`MULTI_ROW_SHORT_UNITS.under` 2048 → 3073, from `short_units_2k.sh`), checked on an H100
# (about 140 s; run from the root with `run` carrying .gpu): `ablate.ts --check`, chained, `inv`
# (the rule of the tree) against `inv+pc512` (512-key pieces) for B = 1, 2, 4, 8, 16 at 2,048–3,200
# keys, then the batch-invariance and piece-run bit tests (their properties draw lengths up to
# 9,000). Ran with `under` 3073: B = 2 lost +43 % at 2560 and +37 % at 3072 (bench/NOTES.md,
# session (27)), so `under` became 2049; with the tree as it is now `inv` is 256-key pieces only at
# 2,048 keys.
# LENS, BS, VARIANTS, NAME and TESTS (0: no tests) set another sweep (`short_units_2k.sh`).
source bench/probes/_probe_env.sh
NAME=${NAME:-short3k}
S=""
for n in ${LENS:-2048 2560 3072 3200}; do
  for b in ${BS:-1 2 4 8 16}; do S="$S;$b,32,8,$n"; done
done
timeout ${I_S:-100} deno run -A --lock=deno.lock bench/probes/ablate.ts --check \
  --variants ${VARIANTS:-def,inv,inv+pc512} --shapes "${S#;}" > $OUT/$NAME.txt 2>&1
echo "$NAME rc=$?"
if [ "${TESTS:-1}" != 0 ]; then
  CI=true timeout ${T_S:-150} deno test -A --v8-flags=--expose-gc --lock=deno.lock \
    tests/batch_invariant_test.ts tests/piece_runs_test.ts tests/tuning_test.ts > /tmp/t1.log 2>&1
  test_summary $? /tmp/t1.log
fi
grep -h "µs:" $OUT/$NAME.txt | cut -c1-160
