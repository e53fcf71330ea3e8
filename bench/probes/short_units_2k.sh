#!/bin/bash
# Session (26): GQA units of 2,048–4,095 keys in batch-invariant pieces of 512 keys (today's rule,
# `MULTI_ROW_SHORT_UNITS.under` = 2048) or 256 (`inv+pc256`). Session (26)'s 384-key call put the
# worst of B = 1 / 4 / 16 at 2k at +25 % with 512 (B = 1) and +17 % with 256 (B = 4); session (18)
# had +24 % and +22 %. If 256 is better on the worst row at every length here, `under` moves to
# 4096. Run from the root with `run` carrying .gpu (about 60 s); `ablate.ts --check`, chained.
source bench/probes/_probe_env.sh
S=""
for n in 2048 2560 3072 3584; do for b in 1 4 16; do S="$S;$b,32,8,$n"; done; done
timeout ${I_S:-100} deno run -A --lock=deno.lock bench/probes/ablate.ts --check \
  --variants def,inv,inv+pc256 --shapes "${S#;}" > $OUT/short2k.txt 2>&1
echo "short2k rc=$?"
grep -h "µs:" $OUT/short2k.txt | cut -c1-160
