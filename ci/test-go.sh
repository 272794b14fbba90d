#!/usr/bin/env bash
# Go binding tests (bindings-go) and the Go example (examples/go).
#   1. builds libmemwatch.a with `cargo build -p memwatch-c --release`
#      (default target dir: the repository's target/, or $CARGO_TARGET_DIR)
#      and copies it to bindings-go/lib/ -- through `go generate`, the
#      documented build command;
#   2. go test -v (shared tests/behavior scenarios + the binding's tests)
#      with GODEBUG=cgocheck=1, then again with -race, then again built with
#      GOEXPERIMENT=cgocheck2 (full checking of the cgo pointer rules);
#   3. runs examples/go and checks its output.
# gofmt and go vet run in the lint suite (ci/test-lint.sh).
# Each go test run ends with a totals line. Exits non-zero on any failure
# (a skipped test counts as a failure: this suite has none by design).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
logdir="$(mktemp -d)"
trap 'rm -rf "$logdir"' EXIT

command -v go >/dev/null || { echo "go not found: install Go >= 1.21" >&2; exit 1; }
command -v gcc >/dev/null || { echo "gcc not found: cgo needs a C compiler" >&2; exit 1; }
# record_test.go reads recordings back with the sqlite3 shell.
if ! command -v sqlite3 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
fi
go version
export CGO_ENABLED=1

echo "== build libmemwatch.a (go generate -> bindings-go/build-lib.sh)"
(cd "$repo/bindings-go" && go generate)

failed=0
# run_tests LABEL [env VAR=value...] -- [go test flags...]
run_tests() {
    local label="$1"; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    local log="$logdir/$label.log"
    echo
    echo "== go test ($label): ${envs[*]} go test -count=1 -v $* ./..."
    local rc=0
    (cd "$repo/bindings-go" && env "${envs[@]}" go test -count=1 -v "$@" ./...) 2>&1 | tee "$log" || rc=$?
    local pass fail skip top
    pass=$(grep -cE '^ *--- PASS' "$log" || true)
    fail=$(grep -cE '^ *--- FAIL' "$log" || true)
    skip=$(grep -cE '^ *--- SKIP' "$log" || true)
    top=$(grep -cE '^--- PASS' "$log" || true)
    echo "go test totals ($label): $pass passed ($top top-level tests and examples, the rest subtests), $fail failed, $skip skipped"
    if [ "$rc" -ne 0 ] || [ "$fail" -ne 0 ] || [ "$skip" -ne 0 ] || [ "$top" -eq 0 ]; then
        echo "go test ($label) FAILED"
        failed=1
    fi
}

run_tests plain GODEBUG=cgocheck=1 --
run_tests race GODEBUG=cgocheck=1 -- -race
run_tests cgocheck2 GOEXPERIMENT=cgocheck2 --

echo
echo "== examples/go"
out="$(cd "$repo/examples/go" && go run .)"
echo "$out"
expected_head=$'buffer changed\n  bytes [0, 1): 00 -> 2a'
if [ "$(printf '%s\n' "$out" | head -n 2)" != "$expected_head" ] ||
   ! printf '%s\n' "$out" | sed -n 3p | grep -qE '^backend (protect|writewatch|poll), 1 region\(s\), 1 event\(s\)$' ||
   [ "$(printf '%s\n' "$out" | wc -l)" -ne 3 ]; then
    echo "examples/go: unexpected output" >&2
    failed=1
fi

if [ "$failed" -ne 0 ]; then
    echo "Go suite FAILED"
    exit 1
fi
echo "Go suite passed"
