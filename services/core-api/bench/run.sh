#!/usr/bin/env bash
# POST /transactions throughput and latency against one core-api (release
# build, no gateway), next to an axum hello-world on the same machine.
# Loopback only; each wrk run is bounded by DURATION.
#
#   services/core-api/bench/run.sh            # DURATION=10s CONNECTIONS=64 THREADS=2
#
# Needs redis-server and wrk on PATH.
set -euo pipefail
cd "$(dirname "$0")/../../.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
REDIS_PORT=${REDIS_PORT:-6479}
CORE_PORT=${CORE_PORT:-7291}
HELLO_PORT=${HELLO_PORT:-7299}
export JWT_SECRET=bench-only-secret-0123456789abcdefghij

cargo build --release -q -p core-api --bin core-api --example hello --example mint_token
bin=target/release

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly "${APPENDONLY:-no}" \
  --appendfsync everysec --dir "$work" >/dev/null &
pids+=($!)
CORE_API_ADDR=127.0.0.1:$CORE_PORT REDIS_URL=redis://127.0.0.1:$REDIS_PORT LOG_FORMAT=json \
  "$bin/core-api" >"$work/core-api.log" 2>&1 &
pids+=($!)
HELLO_ADDR=127.0.0.1:$HELLO_PORT "$bin/examples/hello" &
pids+=($!)
for url in "http://127.0.0.1:$CORE_PORT/readyz" "http://127.0.0.1:$HELLO_PORT/"; do
  for _ in $(seq 100); do curl -fs "$url" >/dev/null && break; sleep 0.1; done
done

export TOKEN=$("$bin/examples/mint_token" alice acme 600)
export RUN_ID=$(date +%s)

echo "== hello-world: GET / ($THREADS threads, $CONNECTIONS connections, $DURATION)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$HELLO_PORT/" | tee "$work/hello.txt"
echo "== core-api: POST /transactions ($THREADS threads, $CONNECTIONS connections, $DURATION)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s services/core-api/bench/post_transactions.lua \
  "http://127.0.0.1:$CORE_PORT" | tee "$work/core.txt"

hello=$(awk '/Requests\/sec/ {print $2}' "$work/hello.txt")
core=$(awk '/Requests\/sec/ {print $2}' "$work/core.txt")
queued=$(redis-cli -p "$REDIS_PORT" XLEN transactions)
records=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'tx:*' | wc -l)
echo "== ratio core/hello: $(awk -v c="$core" -v h="$hello" 'BEGIN {printf "%.1f %%", 100 * c / h}')"
echo "== written: $records records, $queued queue messages"
