#!/usr/bin/env bash
# Heartbeat throughput of the OmniEdge API with 100,000 registered devices on
# SQLite, driven by wrk from a separate process, beside a bare net/http
# handler returning the same JSON, measured in the same run.
#
#   bench/edge-heartbeat.sh [devices] [duration] [connections]
set -euo pipefail
devices=${1:-100000}
duration=${2:-15s}
conns=${3:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cd "$root"
go build -o "$work/omni" ./cmd/omni
go build -o "$work/edgeseed" ./internal/bench/edgeseed
go build -o "$work/barehb" ./internal/bench/barehb

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; return 1; }

echo "seeding $devices devices…"
"$work/edgeseed" --data "$work/data" --devices "$devices" --users 100 --out "$work/requests.tsv"

run_wrk() { # url label
  wrk -t2 -c"$conns" -d"$duration" -s bench/heartbeat.lua "$1" -- "$work/requests.tsv" | grep RESULT | sed "s/^RESULT/$2/"
}

# Rate limits stay on (set high) so their cost is part of the measurement.
port=$(free_port)
mport=$(free_port)
"$work/omni" serve edge --data "$work/data" --edge-listen "127.0.0.1:$port" --nucleus-listen 127.0.0.1:0 \
  --metrics-listen "127.0.0.1:$mport" --rate-limit-token 1000000 --rate-limit-ip 1000000 --log-level warn --access-token-ttl 6h &
omni_pid=$!; pids+=("$omni_pid")
wait_http "http://127.0.0.1:$port/healthz"
run_wrk "http://127.0.0.1:$port" "warmup" >/dev/null
omni_line=$(run_wrk "http://127.0.0.1:$port" "omni")
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$omni_pid/status)
heap_mb=$(curl -s "http://127.0.0.1:$mport/metrics" | awk '/^go_memstats_heap_inuse_bytes/ {printf "%d", $2/1048576}')

bport=$(free_port)
"$work/barehb" --listen "127.0.0.1:$bport" 2>/dev/null &
pids+=("$!")
wait_http "http://127.0.0.1:$bport/"
run_wrk "http://127.0.0.1:$bport" "warmup" >/dev/null
bare_line=$(run_wrk "http://127.0.0.1:$bport" "bare")

echo "$omni_line peak_rss_mb=$((rss_kb / 1024)) heap_inuse_mb=$heap_mb"
echo "$bare_line"
omni_rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$omni_line")
bare_rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$bare_line")
awk -v o="$omni_rps" -v b="$bare_rps" 'BEGIN { printf "ratio omni/bare = %.2f\n", o / b }'
