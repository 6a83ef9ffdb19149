#!/usr/bin/env bash
# POST /transactions throughput and latency against one core-api (release
# build, no gateway), next to an axum hello-world on the same machine.
# Loopback only; each wrk run is bounded by DURATION.
#
#   services/core-api/bench/run.sh            # DURATION=10s CONNECTIONS=64 THREADS=2
#
# Redis runs as process-compose runs it (AOF, fsync every second);
# APPENDONLY=no to compare. Needs redis-server, redis-cli, curl and wrk on PATH.
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

# CPU seconds (user+system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly "${APPENDONLY:-yes}" \
  --appendfsync everysec --dir "$work" >/dev/null &
pids+=($!); redis_pid=$!
CORE_API_ADDR=127.0.0.1:$CORE_PORT REDIS_URL=redis://127.0.0.1:$REDIS_PORT LOG_FORMAT=json \
  "$bin/core-api" >"$work/core-api.log" 2>&1 &
pids+=($!); core_pid=$!
HELLO_ADDR=127.0.0.1:$HELLO_PORT "$bin/examples/hello" &
pids+=($!); hello_pid=$!
for url in "http://127.0.0.1:$CORE_PORT/readyz" "http://127.0.0.1:$HELLO_PORT/"; do
  for _ in $(seq 100); do curl -fs "$url" >/dev/null && break; sleep 0.1; done
done

export TOKEN=$("$bin/examples/mint_token" alice acme 600)
export RUN_ID=$(date +%s)

echo "== load before: $(cat /proc/loadavg)"
h0=$(cpu $hello_pid)
echo "== hello-world: GET / ($THREADS threads, $CONNECTIONS connections, $DURATION)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$HELLO_PORT/" | tee "$work/hello.txt"
h1=$(cpu $hello_pid); c0=$(cpu $core_pid); r0=$(cpu $redis_pid)
echo "== core-api: POST /transactions ($THREADS threads, $CONNECTIONS connections, $DURATION)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s services/core-api/bench/post_transactions.lua \
  "http://127.0.0.1:$CORE_PORT" | tee "$work/core.txt"

c1=$(cpu $core_pid); r1=$(cpu $redis_pid)
echo "== load after: $(cat /proc/loadavg)"
hello=$(awk '/Requests\/sec/ {print $2}' "$work/hello.txt")
core=$(awk '/Requests\/sec/ {print $2}' "$work/core.txt")
queued=$(redis-cli -p "$REDIS_PORT" XLEN transactions)
records=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'tx:*' | wc -l)
echo "== ratio core/hello: $(awk -v c="$core" -v h="$hello" 'BEGIN {printf "%.1f %%", 100 * c / h}')"
hello_n=$(awk '/requests in/ {print $1}' "$work/hello.txt")
core_n=$(awk '/requests in/ {print $1}' "$work/core.txt")
awk -v h0="$h0" -v h1="$h1" -v c0="$c0" -v c1="$c1" -v r0="$r0" -v r1="$r1" -v hn="$hello_n" -v cn="$core_n" 'BEGIN {
  printf "== CPU per request: hello %.1f us; core-api %.1f us + redis %.1f us\n",
    1e6 * (h1 - h0) / hn, 1e6 * (c1 - c0) / cn, 1e6 * (r1 - r0) / cn }'
echo "== written: $records records, $queued queue messages"
