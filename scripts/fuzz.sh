#!/usr/bin/env bash
# Runs every fuzz target in the module, one at a time (go test -fuzz takes
# one target in one package per invocation), each for FUZZTIME (default
# 30s), and stops at the first failure; the failing input is then in the
# package's testdata/fuzz/ and `go test` replays it. FUZZMINIMIZETIME
# (default 5s) bounds how long the fuzzer shrinks each new input, so that
# short runs spend their time fuzzing. The seed corpora alone run under
# `go test` (make test, make unit).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}

# "dir name" for every func FuzzX(f *testing.F) in a _test.go file.
mapfile -t targets < <(
	grep -rHo --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git \
		-E '^func Fuzz[A-Za-z0-9_]*\(' . |
		sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($|\1 \2|' | sort -u
)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${FUZZTIME} each"
for t in "${targets[@]}"; do
	dir=${t% *}
	name=${t#* }
	echo "fuzz: ./$dir $name"
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" \
		-fuzzminimizetime "$FUZZMINIMIZETIME" "./$dir"; then
		echo "fuzz: FAIL ./$dir $name" >&2
		exit 1
	fi
done
echo "fuzz: all ${#targets[@]} targets passed"
