#!/usr/bin/env bash
# make bench-monitoring: the bundled stack with --profile monitoring on the
# local engine. Prints the API's throughput (wrk on GET /v1/invoices) with
# Prometheus scraping it every 5 s divided by the same without Prometheus
# (target: at least 0.97), then Prometheus' memory after BENCH_LOAD_MINUTES
# (default 10) of load.
#
# "Without" is Prometheus frozen (docker pause: the cgroup freezer), not
# stopped: a frozen Prometheus takes no CPU and scrapes nothing, and thawing
# it resumes scraping at once. Stopping and starting it (what this bench did
# first) measured a Prometheus replaying its WAL after every start instead of
# one scraping: that restart work, not scraping, cost 10 % of the machine.
# The machine's own throughput wanders by 10-20 % from one run to the next
# (2 cores shared by wrk, the proxy, the API and PostgreSQL), so the ratio is
# the median over BENCH_ROUNDS pairs of adjacent short runs, the order
# alternating (ABBA...) so that drift favours neither side; the CPU time the
# monitoring containers took during the "with" runs is printed too, as the
# noise-free figure of their cost.
#
# Environment: BENCH_PROJECT (invbench-mon), BENCH_API_PORT (18890),
# BENCH_PROM_PORT (18891), BENCH_DURATION seconds per wrk run (10),
# BENCH_ROUNDS pairs of runs (8), BENCH_CLIENTS (16), BENCH_THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=${BENCH_PROJECT:-invbench-mon}
API_PORT=${BENCH_API_PORT:-18890}
PROM_PORT=${BENCH_PROM_PORT:-18891}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-8}
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
	docker unpause "$PROJECT-prometheus-1" >/dev/null 2>&1 || true
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

# cpu_us CONTAINER...: CPU time the containers have used, in microseconds
# (cgroup v1 cpuacct or v2 cpu.stat; 0 when neither is readable).
cpu_us() {
	local total=0 id u
	for c in "$@"; do
		id=$(docker inspect -f '{{.Id}}' "$c")
		if [ -r "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" ]; then
			u=$(($(cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage") / 1000))
		elif [ -r "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat" ]; then
			u=$(awk '/^usage_usec/ { print $2 }' "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat")
		else
			u=0
		fi
		total=$((total + u))
	done
	echo "$total"
}
monitoring=("$prom_container" "$PROJECT-postgres-exporter-1")
mon_cpu=0 with_seconds=0
measure_without() {
	docker pause "$prom_container" >/dev/null
	without+=("$(rps "${DURATION}s")")
	docker unpause "$prom_container" >/dev/null
}
measure_with() {
	local c0 c1
	c0=$(cpu_us "${monitoring[@]}")
	with+=("$(rps "${DURATION}s")")
	c1=$(cpu_us "${monitoring[@]}")
	mon_cpu=$((mon_cpu + c1 - c0)) with_seconds=$((with_seconds + DURATION))
}
wait_ready
sleep 6                 # at least one scrape of every target
rps 5s >/dev/null       # warm the API, the proxy and PostgreSQL up
# Alternate which goes first (ABBA...), so a drift of the machine's load
# during the run does not favour one side.
without=() with=() ratios=()
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then measure_without; measure_with; else measure_with; measure_without; fi
	ratios+=("$(awk -v a="${with[-1]}" -v b="${without[-1]}" 'BEGIN { printf "%.3f", a / b }')")
	echo "round $r: without Prometheus ${without[-1]} req/s, scraped every 5 s ${with[-1]} req/s, ratio ${ratios[-1]}"
done
w=$(printf '%s\n' "${with[@]}" | median)
wo=$(printf '%s\n' "${without[@]}" | median)
echo "API throughput (medians of $ROUNDS x ${DURATION}s, $CLIENTS connections): without Prometheus $wo req/s, scraped every 5 s $w req/s"
echo "ratio with/without: $(printf '%s\n' "${ratios[@]}" | median) (median of the $ROUNDS pairs; target >= 0.97)"
awk -v us="$mon_cpu" -v s="$with_seconds" -v n="$(nproc)" 'BEGIN { if (s > 0 && us > 0) printf "CPU of Prometheus + postgres_exporter while scraped: %.1f ms per second = %.2f %% of this machine'"'"'s %d cores\n", us / s / 1000, us / s / 10000 / n, n }'

if [ "$LOAD_MINUTES" -gt 0 ]; then
	echo "== $LOAD_MINUTES minutes of load, then Prometheus' memory"
	rps "${LOAD_MINUTES}m" | awk '{ print "load: " $1 " req/s" }'
	q() { curl -fsS --get "$prom/api/v1/query" --data-urlencode "query=$1" | sed -n 's/.*"value":\[[^,]*,"\([^"]*\)".*/\1/p'; }
	echo "Prometheus after $LOAD_MINUTES min: container memory $(docker stats --no-stream --format '{{.MemUsage}}' "$prom_container"), RSS $(q 'process_resident_memory_bytes{job="prometheus"} / 1048576' | cut -d. -f1) MiB, head series $(q 'prometheus_tsdb_head_series')"
fi
