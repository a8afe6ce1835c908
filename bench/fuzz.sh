#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS_PER_TARGET seconds with cargo-fuzz on
# the nightly toolchain, one after the other, then prints executions and coverage per target.
#
#   bench/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   # default 300, every target;
#                                                   # needs `cargo install cargo-fuzz`
#
# The committed corpus (fuzz/corpus/<target>/) and regressions are read, never written: new
# inputs go to fuzz/work/<target>/ (ignored by git; `cargo fuzz cmin` them into the corpus when
# worth keeping). Crashes land in fuzz/artifacts/<target>/; copy each into
# fuzz/regressions/<target>/ once fixed. Everything runs under `nice -n 19`.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
fuzz() { nice -n 19 cargo +nightly fuzz "$@"; }

fuzz build --features libfuzzer || exit 1
shift $(($# > 0))
targets=${*:-$(fuzz list)}
summary=()
for t in $targets; do
  mkdir -p "fuzz/work/$t"
  dirs=("fuzz/work/$t" "fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  log=fuzz/work/$t.log
  echo "== $t: ${secs}s (log $log)"
  fuzz run --features libfuzzer "$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  status=$?
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FAILED: $(grep -o 'Test unit written to .*' "$log" | head -1 | sed 's/Test unit written to //')"
    execs=${execs:-$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")}
  fi
  summary+=("$(printf '%-20s %12s %8s %7s %7s %14s  %s' "$t" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

echo
printf '%-20s %12s %8s %7s %7s %14s  %s\n' target execs exec/s cov ft corpus result
printf '%s\n' "${summary[@]}"
! printf '%s\n' "${summary[@]}" | grep -q FAILED
