#!/bin/bash
# Session (26): GQA units of 2,048–4,095 keys in batch-invariant pieces of 512 keys (today's rule,
# `MULTI_ROW_SHORT_UNITS.under` = 2048) or 256 (`inv+pc256`). Session (26)'s 384-key call put the
# worst of B = 1 / 4 / 16 at 2k at +25 % with 512 (B = 1) and +17 % with 256 (B = 4); session (18)
# had +24 % and +22 %. If 256 is better on the worst row at every length here, `under` moves to
# 4096. Run from the root with `run` carrying .gpu (about 60 s); `ablate.ts --check`, chained.
# Since session (27) `inv` at 2,048 keys is 256-key pieces too (`under` 2049). The sweep is
# `short_units_3k.sh`'s with these lengths, batches and variants, and no tests.
LENS="2048 2560 3072 3584" BS="1 4 16" VARIANTS=def,inv,inv+pc256 NAME=short2k TESTS=0 \
  exec bash bench/probes/short_units_3k.sh
