#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer for N seconds (default 15); exits non-zero when a target
# crashes (the input is left in fuzz/artifacts/<target>/). The test command runs a shorter,
# uninstrumented smoke run of the same targets (tests/e2e/fuzz_smoke.rs); this is the coverage-guided
# one, after an instrumented build of about 8 minutes on 2 cores:
#
#   fuzz/run-smoke.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked` when missing). libFuzzer needs
# nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them. The sanitizer defaults
# to none (the crates under test forbid unsafe code; it halves the exec rate): FUZZ_SANITIZER=address
# to change it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

seconds="${1:-15}"
shift || true
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# The CSR seeds follow the fixtures (new fixtures become seeds without a commit here).
for f in ../fixtures/csr/*.pem; do
    cp -f "$f" "corpus/csr/seed-$(basename "$f")"
done

build_log="$(mktemp)"
if ! cargo fuzz build -s "$sanitizer" >"$build_log" 2>&1; then
    tail -50 "$build_log" >&2
    echo "fuzz smoke: the targets do not build" >&2
    exit 1
fi
rm -f "$build_log"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$(mktemp)"
    echo "== $t: ${seconds}s"
    if cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
        rate="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')"
        echo "   ok: ${execs:-?} runs, ${rate:-?} exec/s"
    else
        echo "   CRASH in $t:" >&2
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to|deadly signal' "$log" >&2 || tail -30 "$log" >&2
        failed+=("$t")
    fi
    rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: crashes in ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, ${seconds}s each, no crash"
