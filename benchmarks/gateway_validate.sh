#!/usr/bin/env bash
# validate through the gateway (latts-tune serve --start-engine), 100 questions, after
# calibrating this machine; writes every output into OUT. Results: gateway_validate.md.
set -euo pipefail
# Usage: [OUT=FOLDER] [DEADLINE=1s] bash benchmarks/gateway_validate.sh
D=${OUT:-$(mktemp -d /tmp/latts-gateway-validate-XXXX)}
if [ -n "$(ls -A "$D" 2>/dev/null)" ]; then echo "error: $D is not empty; name a new folder in OUT" >&2; exit 2; fi
mkdir -p "$D"; cd "$(dirname "$0")/.."
L=(.venv/bin/latts-tune --storage sqlite:///$D/latts.db)
date -u +%FT%TZ > $D/started
"${L[@]}" calibrate --json > $D/calibrate.json 2> $D/calibrate.err
"${L[@]}" run --deadline "${DEADLINE:-1s}" > $D/run.txt 2>&1
cmd=$(grep "^Export: " $D/run.txt | sed 's/^Export: //; s/^latts-tune //; s#-o presets/#-o '$D'/presets#')
"${L[@]}" $cmd > $D/export.txt 2>&1
name=$("${L[@]}" presets list --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['name'])")
echo "$name" > $D/preset_name
"${L[@]}" serve --preset "$name" --start-engine --port 8091 > $D/serve.log 2>&1 &
pid=$!
for i in $(seq 1 240); do curl -sf -m 2 http://127.0.0.1:8091/health >/dev/null 2>&1 && break; sleep 1; done
"${L[@]}" validate --preset "$name" --questions 100 --gateway-url http://127.0.0.1:8091 > $D/validate.txt 2>&1 || echo "validate rc=$?" >> $D/validate.txt
kill $pid; wait $pid || true
date -u +%FT%TZ > $D/finished
