#!/usr/bin/env bash
# After the whole suite: every log line any test process wrote (tests/src
# tees them to target/test-logs), and what each test's stack stored when it
# ended (every table item, bucket object and queued message, searched by the
# harness; its findings are written there too), are searched for the canary
# PHI values the tests seed (canary_patient: MRN, names, email, street, city
# + a 12-hex tag).
set -euo pipefail
dir=${1:-target/test-logs}
files=$(find "$dir" -name '*.jsonl' 2>/dev/null | wc -l)
if [ "$files" -eq 0 ]; then
    echo "canary sweep: no test logs in $dir" >&2
    exit 1
fi
lines=$(cat "$dir"/*.jsonl | grep -vc '"store_sweep"' || true)
stacks=$(cat "$dir"/*.jsonl | grep -c '"store_sweep"' || true)
stored=$(cat "$dir"/*.jsonl | grep -o '"stored":[0-9]*' | awk -F: '{s += $2} END {print s + 0}')
if grep -lE '(MRN|Family|Given|mail|Street|City)[0-9a-f]{12}' "$dir"/*.jsonl; then
    echo "canary sweep: canary PHI found in the test logs or stores above" >&2
    exit 1
fi
echo "canary sweep: $lines log lines from $files test processes and ${stored:-0} stored items of $stacks stacks, no canary found"
