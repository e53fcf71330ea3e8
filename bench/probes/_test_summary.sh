# Sourced by the GPU probe scripts: `test_summary RC LOG` writes `$OUT/tests.txt` from a
# `deno test` log — the exit status and time, each failure's first lines (stack frames dropped)
# and the lines that say what ran (ok/FAILED totals, seeds, case counts, the adapter) — and
# prints it.
test_summary() {
  local rc=$1 log=$2
  echo "tests rc=$rc $(date -u)" > $OUT/tests.txt
  grep -h -A12 "FAILED\|rror:" "$log" | grep -v "^\s*at " | head -40 >> $OUT/tests.txt
  grep -E "^(ok|FAILED) \||seed|cases ran|specs run on|information" "$log" >> $OUT/tests.txt
  cat $OUT/tests.txt
}
