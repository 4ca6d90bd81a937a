#!/usr/bin/env bash
# After the whole suite: every log line any test process wrote (tests/src
# tees them to target/test-logs) is searched for the canary PHI values the
# tests seed (canary_patient: MRN, names, email, street, city + a 12-hex tag).
set -euo pipefail
dir=${1:-target/test-logs}
files=$(find "$dir" -name '*.jsonl' 2>/dev/null | wc -l)
lines=$(cat "$dir"/*.jsonl 2>/dev/null | wc -l)
if [ "$files" -eq 0 ]; then
    echo "canary sweep: no test logs in $dir" >&2
    exit 1
fi
if grep -lE '(MRN|Family|Given|mail|Street|City)[0-9a-f]{12}' "$dir"/*.jsonl; then
    echo "canary sweep: canary PHI found in the test logs above" >&2
    exit 1
fi
echo "canary sweep: $lines log lines from $files test processes, no canary found"
