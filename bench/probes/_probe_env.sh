# Sourced first by the GPU probe scripts (on the device host, from the project root): the
# bundle's Deno on PATH with its setup output kept off $OUT (at most 8 files come back), plain
# logs, the start time in $OUT/date.txt, and `test_summary` (_test_summary.sh).
set -u
source bench/probes/_test_summary.sh
source .gpu/setup.sh > /tmp/setup.log 2>&1
export RUST_BACKTRACE=0 NO_COLOR=1
date -u > $OUT/date.txt
