#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) on its seed corpus and prints, per target, the executions
# and the findings (crash, leak, timeout, out-of-memory inputs saved under build-fuzz/findings/<target>/).
# After a finding the target is restarted until its time is used, so one bug does not hide the others.
# Builds build-fuzz (clang) and the seeds (make_seeds.sh) when they are missing. Runs under nice.
#
#   bash fuzz/run_all.sh [SECONDS] [TARGET...]       e.g. bash fuzz/run_all.sh 120 model_file
# A finding is replayed with: build-fuzz/fuzz_<target> build-fuzz/findings/<target>/<file>
# Keep it as a regression test: copy it to tests/data/fuzz/<target>/ (tests/test_fuzz_regressions.cpp).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
build=${IGPT_FUZZ_BUILD:-build-fuzz}

if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
    gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S fuzz -B "$build" "${gen[@]}" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null || exit 1
fi
nice -n 19 cmake --build "$build" -j"${JOBS:-2}" >/dev/null || { echo "fuzz build failed"; exit 1; }
[ -d "$build/corpus" ] || bash fuzz/make_seeds.sh "$build/corpus" || exit 1

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$build"/fuzz_*; do [ -x "$f" ] && targets+=("${f##*/fuzz_}"); done
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/igpt_fuzz.XXXXXX")  # the path-based readers' scratch files
trap 'rm -rf "$tmp"' EXIT
printf "%-16s %8s %12s %10s %9s\n" target seconds executions corpus findings
total_findings=0
for t in "${targets[@]}"; do
    bin=$build/fuzz_$t
    seeds=$build/corpus/$t
    work=$build/work/$t
    found=$build/findings/$t
    mkdir -p "$work" "$found" "$seeds"
    log=$build/logs/$t.log
    mkdir -p "$build/logs"
    : > "$log"
    execs=0
    start=$SECONDS
    while [ $((SECONDS - start)) -lt "$secs" ]; do
        left=$((secs - (SECONDS - start)))
        # -rss_limit_mb / -malloc_limit_mb: an input that makes a parser allocate more than 1 GiB is a finding.
        TMPDIR=$tmp ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
            nice -n 19 "$bin" -max_total_time="$left" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=1024 \
            -print_final_stats=1 -artifact_prefix="$found/" "$work" "$seeds" >> "$log" 2>&1
        rc=$?
        n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$')
        execs=$((execs + ${n:-0}))
        # mark this run's stats as counted
        sed -i 's/stat::number_of_executed_units/counted::number_of_executed_units/' "$log"
        [ $rc -eq 0 ] && break
    done
    nfound=$(find "$found" -type f | wc -l)
    total_findings=$((total_findings + nfound))
    printf "%-16s %8d %12d %10d %9d\n" "$t" $((SECONDS - start)) "$execs" "$(ls "$work" | wc -l)" "$nfound"
done
[ "$total_findings" -eq 0 ] || echo "findings: $build/findings/ (logs: $build/logs/)"
exit 0
