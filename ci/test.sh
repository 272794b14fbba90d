#!/usr/bin/env bash
# The README's test command: installs what the tests need and runs every test
# of every language, each under its own runner (which prints its own totals).
#   bash ci/test.sh            # everything
#   bash ci/test.sh rust c     # only some suites (lint, rust, c, python, node, java, go, csharp, store, glass, sql, cli)
# lint (ci/test-lint.sh: cargo fmt --check, clippy -D warnings on every crate
# and binding crate, gofmt and go vet) runs first so a red lint shows early.
# Exits non-zero if any suite failed; prints a summary table at the end.
set -uo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
# A clean CI build gains nothing from incremental compilation, whose caches
# took 2 GiB of the ~9 GiB a full run writes (a run once failed on a full disk).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Free space at the start, so a disk that fills up is named in the log.
df -h "$repo" 2>/dev/null | tail -1 | awk '{print "disk: " $4 " free of " $2 " at start"}'

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (rustup) first" >&2
    exit 1
fi

all_suites=(lint rust c store glass python node java go csharp sql cli)
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=("${all_suites[@]}")

declare -A result seconds

run_suite() {
    local name="$1"
    local start=$SECONDS
    echo
    echo "================================================================"
    echo "== suite: $name"
    echo "================================================================"
    case "$name" in
        rust)
            # The engine's own tests (unit, shared scenarios, engine behaviour).
            cargo test -p memwatch-core
            ;;
        *)
            if [ -f "ci/test-$name.sh" ]; then
                bash "ci/test-$name.sh"
            else
                echo "ci/test-$name.sh is missing"
                return 1
            fi
            ;;
    esac
}

failed=0
for s in "${suites[@]}"; do
    if run_suite "$s"; then
        result[$s]=passed
    else
        result[$s]=FAILED
        failed=1
    fi
    seconds[$s]=$((SECONDS - ${start_total:-0}))
    start_total=$SECONDS
done

echo
echo "================================================================"
echo "== summary"
for s in "${suites[@]}"; do
    printf '%-8s %-7s %5ss\n' "$s" "${result[$s]}" "${seconds[$s]}"
done
df -h "$repo" 2>/dev/null | tail -1 | awk '{print "disk: " $4 " free at the end, " $3 " used"}'
exit $failed
