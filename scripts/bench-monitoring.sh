#!/usr/bin/env bash
# make bench-monitoring: the bundled stack with --profile monitoring on the
# local engine. Prints the API's throughput (wrk on GET /v1/invoices) with
# Prometheus scraping it every 5 s divided by the same without Prometheus
# (its container stopped), alternated in one run so both see the same
# machine (target: at least 0.97), then Prometheus' memory after
# BENCH_LOAD_MINUTES (default 10) of load.
#
# Environment: BENCH_PROJECT (invbench-mon), BENCH_API_PORT (18890),
# BENCH_PROM_PORT (18891), BENCH_DURATION seconds per wrk run (20),
# BENCH_ROUNDS pairs of runs (3), BENCH_CLIENTS (16), BENCH_THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=${BENCH_PROJECT:-invbench-mon}
API_PORT=${BENCH_API_PORT:-18890}
PROM_PORT=${BENCH_PROM_PORT:-18891}
DURATION=${BENCH_DURATION:-20}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-16}
THREADS=${BENCH_THREADS:-2}
LOAD_MINUTES=${BENCH_LOAD_MINUTES:-10}
for c in wrk curl docker go; do
	command -v "$c" >/dev/null || { echo "bench-monitoring: $c not found (make deps)" >&2; exit 1; }
done

# The generated database password lives only as long as the run.
XDG_CONFIG_HOME=$(mktemp -d /tmp/bench-monitoring.XXXXXX)
export XDG_CONFIG_HOME INVOICING_API_PORT=$API_PORT INVOICING_PROMETHEUS_PORT=$PROM_PORT
inv=./bin/invdeploy
cleanup() {
	"$inv" down -p "$PROJECT" --volumes -q >/dev/null 2>&1 || true
	rm -rf "$XDG_CONFIG_HOME"
}
trap cleanup EXIT

echo "== building bin/invdeploy"
CGO_ENABLED=0 go build -trimpath -o "$inv" ./cmd/invdeploy
echo "== up -p $PROJECT --profile monitoring (API on :$API_PORT, Prometheus on :$PROM_PORT)"
"$inv" up -p "$PROJECT" --profile monitoring -q

api=http://127.0.0.1:$API_PORT
prom=http://127.0.0.1:$PROM_PORT
prom_container=$PROJECT-prometheus-1
for _ in $(seq 20); do
	curl -fsS -o /dev/null -H 'Content-Type: application/json' -X POST "$api/v1/invoices" \
		-d '{"currency":"EUR","customer":{"name":"Bench"},"line_items":[{"description":"x","quantity":1,"unit_amount":100}]}'
done

rps() {
	wrk -t"$THREADS" -c"$CLIENTS" -d"$1" "$api/v1/invoices?limit=10" | awk '/^Requests\/sec:/ { print $2 }'
}
wait_ready() {
	for _ in $(seq 60); do curl -fsS -o /dev/null "$prom/-/ready" 2>/dev/null && return 0; sleep 1; done
	echo "bench-monitoring: Prometheus did not become ready" >&2
	exit 1
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

measure_without() {
	docker stop -t 5 "$prom_container" >/dev/null
	without+=("$(rps "${DURATION}s")")
}
measure_with() {
	docker start "$prom_container" >/dev/null
	wait_ready
	sleep 6 # at least one scrape before measuring
	with+=("$(rps "${DURATION}s")")
}
# Alternate which goes first (ABBA...), so a drift of the machine's load
# during the run does not favour one side.
without=() with=()
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then measure_without; measure_with; else measure_with; measure_without; fi
	echo "round $r: without Prometheus ${without[-1]} req/s, scraped every 5 s ${with[-1]} req/s"
done
docker start "$prom_container" >/dev/null
w=$(printf '%s\n' "${with[@]}" | median)
wo=$(printf '%s\n' "${without[@]}" | median)
echo "API throughput (median of $ROUNDS x ${DURATION}s, $CLIENTS connections): without Prometheus $wo req/s, scraped every 5 s $w req/s"
awk -v a="$w" -v b="$wo" 'BEGIN { printf "ratio with/without: %.3f (target >= 0.97)\n", a / b }'

if [ "$LOAD_MINUTES" -gt 0 ]; then
	echo "== $LOAD_MINUTES minutes of load, then Prometheus' memory"
	rps "${LOAD_MINUTES}m" | awk '{ print "load: " $1 " req/s" }'
	q() { curl -fsS --get "$prom/api/v1/query" --data-urlencode "query=$1" | sed -n 's/.*"value":\[[^,]*,"\([^"]*\)".*/\1/p'; }
	echo "Prometheus after $LOAD_MINUTES min: container memory $(docker stats --no-stream --format '{{.MemUsage}}' "$prom_container"), RSS $(q 'process_resident_memory_bytes{job="prometheus"} / 1048576' | cut -d. -f1) MiB, head series $(q 'prometheus_tsdb_head_series')"
fi
