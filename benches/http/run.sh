#!/usr/bin/env bash
# HTTP benchmark: wrk (1 thread, 32 connections, loopback) against the bench
# server (hyper via axum, 2 worker threads), bare handler against the layer and the floor,
# in the same run. Prints requests/s, p99 latency and the ratios.
#
#   bash benches/http/run.sh [seconds per run, default 10] [rounds, default 3]
#
# HTTP_PIN=1 puts the server on CPU 0 and wrk on CPU 1 (taskset), so that
# the client's latency is not the server's CPU share.
#
# HTTP_BEFORE=PATH adds a second bench server, the binary at PATH (built from
# another commit), on the next port: its no-key, fresh and replay paths run in
# the same rounds as "before_*", so two commits compare in one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
rounds="${2:-3}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
server_bin=$(cargo bench --bench bench_server --no-run 2>&1 | grep -o 'target/release/deps/bench_server-[0-9a-f]*' | head -n 1)
[ -x "$server_bin" ] || { echo "could not build the bench server"; exit 1; }
addr=127.0.0.1:3100
server_cpu=() client_cpu=()
if [ "${HTTP_PIN:-0}" = 1 ]; then server_cpu=(taskset -c 0) client_cpu=(taskset -c 1); fi
before_addr=127.0.0.1:3101
servers=()
trap 'kill "${servers[@]}" 2>/dev/null' EXIT
start_server() { # binary address
  ADDR=$2 "${server_cpu[@]}" "$1" serve >/dev/null &
  servers+=($!)
  for _ in $(seq 1 50); do curl -s -o /dev/null "http://$2/bare" -d '' && break; sleep 0.1; done
}
start_server "$server_bin" "$addr"
if [ -n "${HTTP_BEFORE:-}" ]; then start_server "$HTTP_BEFORE" "$before_addr"; fi
# The 1 KiB JSON body every request sends; the replayed key is recorded once
# with that same body, so that the replay scenario replays (a different body
# would make it a run of 409 payload mismatches).
body_file=$(mktemp)
trap 'kill "${servers[@]}" 2>/dev/null; rm -f "$body_file"' EXIT
{ printf '{"items":['; for i in $(seq 1 44); do [ "$i" -gt 1 ] && printf ','; printf '{"sku":"abc","qty":1}'; done; printf ']}'; } > "$body_file"
printf '%*s' $((1024 - $(wc -c < "$body_file"))) '' >> "$body_file"
record_replayed() { # address
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$1/orders" \
    -H 'Content-Type: application/json' -H 'Idempotency-Key: wrk-replayed' --data-binary "@$body_file")
  [ "$status" = 201 ] || { echo "recording the replayed key on $1 answered $status"; exit 1; }
}
record_replayed "$addr"
curl -s -o /dev/null -X POST "http://$addr/floor" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: wrk-replayed' --data-binary "@$body_file"
if [ -n "${HTTP_BEFORE:-}" ]; then record_replayed "$before_addr"; fi

run() { # name path mode [address]
  local out
  out=$(BODY_FILE=$body_file BENCH_PATH=$2 MODE=$3 "${client_cpu[@]}" wrk -t1 -c32 -d"${seconds}s" --latency -s benches/http/post.lua "http://${4:-$addr}" 2>&1)
  local rps p99 not_2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  # Every scenario answers 201; anything else means it measured something else.
  not_2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$1 $rps $p99 ${not_2xx:-0}"
}
to_ms() { # wrk latency (e.g. 1.23ms, 850.00us, 1.2s) in ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000; print n }'
}
scenarios=("no_key /orders none" "fresh /orders fresh" "replay /orders replay" "floor_fresh /floor fresh" "floor_replay /floor replay")
if [ -n "${HTTP_BEFORE:-}" ]; then
  scenarios+=("before_no_key /orders none $before_addr" "before_fresh /orders fresh $before_addr" "before_replay /orders replay $before_addr")
fi
# Each round runs bare, then every scenario; a scenario's ratios are to the
# bare run of its own round, and the table shows their medians over the
# rounds (wrk shares the cores with the server, so one run alone is noisy).
rows=$(mktemp)
trap 'kill "${servers[@]}" 2>/dev/null; rm -f "$body_file" "$rows"' EXIT
for round in $(seq 1 "$rounds"); do
  set -- $(run bare /bare none)
  bare_rps=$2
  bare_p99=$(to_ms "$3")
  echo "round $round: bare $2 requests/s, p99 $3" >&2
  for scenario in "${scenarios[@]}"; do
    set -- $scenario
    set -- $(run "$1" "$2" "$3" "${4:-}")
    echo "round $round: $1 $2 requests/s, p99 $3, not 2xx $4" >&2
    echo "$1 $2 $(to_ms "$3") $bare_rps $bare_p99 $4" >> "$rows"
  done
done
printf '%-13s %12s %10s %14s %12s %8s\n' scenario "requests/s" "p99 (ms)" "x bare req/s" "x bare p99" "not 2xx"
for scenario in "${scenarios[@]}"; do
  set -- $scenario
  awk -v n="$1" '
    function median(a, k,   i, j, t) {
      for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    $1 == n { k++; rps[k] = $2; p99[k] = $3; rr[k] = $2 / $4; pr[k] = $3 / $5; errors += $6 }
    END { printf "%-13s %12.0f %10.2f %14.2f %12.2f %8d\n", n, median(rps, k), median(p99, k), median(rr, k), median(pr, k), errors }
  ' "$rows"
done
