#!/usr/bin/env bash
# HTTP benchmark: wrk (1 thread, 32 connections, loopback) against the bench
# server (hyper via axum, 2 worker threads), bare handler against the layer,
# in the same run. Prints requests/s, p99 latency and the ratios.
#
#   bash benches/http/run.sh [seconds per scenario, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
server_bin=$(cargo bench --bench bench_server --no-run 2>&1 | grep -o 'target/release/deps/bench_server-[0-9a-f]*' | head -n 1)
[ -x "$server_bin" ] || { echo "could not build the bench server"; exit 1; }
addr=127.0.0.1:3100
ADDR=$addr "$server_bin" serve >/dev/null &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 1 50); do curl -s -o /dev/null "http://$addr/bare" -d '' && break; sleep 0.1; done
# Record the replayed key once.
curl -s -o /dev/null -X POST "http://$addr/orders" -H 'Idempotency-Key: wrk-replayed' -d '{}' || true

run() { # name path mode
  local out
  out=$(BENCH_PATH=$2 MODE=$3 wrk -t1 -c32 -d"${seconds}s" --latency -s benches/http/post.lua "http://$addr" 2>&1)
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$1 $rps $p99"
}
to_ms() { # wrk latency (e.g. 1.23ms, 850.00us, 1.2s) in ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000; print n }'
}
results=()
# Bare first and last, to see how much the machine drifted during the run.
for scenario in "bare /bare none" "no_key /orders none" "fresh /orders fresh" "replay /orders replay" "bare_again /bare none"; do
  set -- $scenario
  results+=("$(run "$1" "$2" "$3")")
done
bare_rps=$(echo "${results[0]}" | awk '{print $2}')
bare_p99=$(to_ms "$(echo "${results[0]}" | awk '{print $3}')")
printf '%-12s %12s %10s %14s %12s\n' scenario "requests/s" "p99" "x bare req/s" "x bare p99"
for line in "${results[@]}"; do
  set -- $line
  p99_ms=$(to_ms "$3")
  awk -v n="$1" -v r="$2" -v p="$3" -v br="$bare_rps" -v pm="$p99_ms" -v bp="$bare_p99" \
    'BEGIN { printf "%-12s %12.0f %10s %14.2f %12.2f\n", n, r, p, r / br, pm / bp }'
done
