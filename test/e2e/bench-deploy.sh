#!/usr/bin/env bash
# make bench-deploy: time to all-healthy of `invdeploy up` against
# `docker-compose up -d` followed by polling until every container is healthy,
# on the same compose file with warm images, in the same run; and the time of a
# no-op `invdeploy up`. Prints each run, the medians and the ratio.
# Targets: ratio <= 1.0, no-op <= 1 s.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
inv=${INVDEPLOY:-$root/bin/invdeploy}
file=$root/test/e2e/testdata/bench/compose.yaml
runs=${BENCH_RUNS:-3}
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

command -v docker-compose >/dev/null || { echo "bench-deploy: docker-compose not found (make deps installs it)" >&2; exit 1; }
[ -x "$inv" ] || { echo "bench-deploy: $inv not built (make build)" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }

cleanup() {
	"$inv" -q down -p bench-inv --volumes >/dev/null 2>&1 || true
	BENCH_PORT=18502 docker-compose -f "$file" -p bench-dc down --volumes >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

# Warm images: postgres:15 from make images, the app built once.
docker image inspect postgres:15 >/dev/null
BENCH_PORT=18501 "$inv" -q build -f "$file" -p bench-inv >/dev/null

# all_healthy PROJECT: every container of PROJECT is running and healthy.
all_healthy() {
	local ids states
	ids=$(docker ps -aq --filter "label=com.docker.compose.project=$1")
	[ -n "$ids" ] || return 1
	states=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' $ids)
	[ "$(echo "$states" | grep -cv '^running/healthy$')" = 0 ]
}

inv_times=() dc_times=() noop_times=()
for i in $(seq "$runs"); do
	t0=$(now)
	BENCH_PORT=18501 "$inv" -q up -f "$file" -p bench-inv >/dev/null
	t1=$(now)
	all_healthy bench-inv || { echo "bench-deploy: invdeploy returned before all healthy" >&2; exit 1; }
	inv_times+=("$(elapsed "$t0" "$t1")")

	t0=$(now)
	BENCH_PORT=18501 "$inv" -q up -f "$file" -p bench-inv >/dev/null
	t1=$(now)
	noop_times+=("$(elapsed "$t0" "$t1")")

	t0=$(now)
	BENCH_PORT=18502 docker-compose -f "$file" -p bench-dc up -d >/dev/null 2>&1
	until all_healthy bench-dc; do sleep 0.1; done
	t1=$(now)
	dc_times+=("$(elapsed "$t0" "$t1")")

	printf 'run %d: invdeploy up %.2fs  docker-compose up -d + poll %.2fs  no-op invdeploy up %.3fs\n' \
		"$i" "${inv_times[-1]}" "${dc_times[-1]}" "${noop_times[-1]}"
	cleanup
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mi=$(median "${inv_times[@]}")
md=$(median "${dc_times[@]}")
mn=$(median "${noop_times[@]}")
ratio=$(awk -v a="$mi" -v b="$md" 'BEGIN {printf "%.3f", a / b}')
printf 'median of %d runs: invdeploy up %.2fs, docker-compose up -d + poll %.2fs, ratio %.2f (target <= 1.0); no-op invdeploy up %.3fs (target <= 1 s)\n' \
	"$runs" "$mi" "$md" "$ratio" "$mn"
