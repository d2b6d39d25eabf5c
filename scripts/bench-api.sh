#!/usr/bin/env bash
# make bench-api: the invoicing API against PostgreSQL on loopback, driven by
# wrk, next to pgbench running the same SQL on the same database in one
# round trip. Prints req/s, p50, p99 and the ratio API/pgbench per operation.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-15}   # seconds per run
CLIENTS=${BENCH_CLIENTS:-16}
THREADS=${BENCH_THREADS:-2}
PGBIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
for c in wrk "$PGBIN/pgbench" "$PGBIN/initdb" "$PGBIN/postgres" "$PGBIN/psql"; do
  command -v "$c" >/dev/null || { echo "bench-api: $c not found (make deps installs wrk and postgresql-15)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/bench-api.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== building bin/invoicing-api"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/invoicing-api ./cmd/invoicing-api

echo "== starting PostgreSQL 15 in $work"
mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres: "$work/pg"
as_pg "$PGBIN/initdb" -D "$work/pg/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
PGPORT=$(free_port)
as_pg "$PGBIN/postgres" -D "$work/pg/data" -k "$work/pg" -h 127.0.0.1 -p "$PGPORT" \
  -c max_connections=100 -c shared_buffers=256MB >"$work/pg.log" 2>&1 &
pids+=($!)
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres
for _ in $(seq 100); do "$PGBIN/psql" -qAtc 'SELECT 1' postgres >/dev/null 2>&1 && break; sleep 0.1; done
"$PGBIN/psql" -qc 'CREATE DATABASE invoicing' postgres

APIPORT=$(free_port)
export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/invoicing?sslmode=disable"
PORT=$APIPORT SHUTDOWN_DELAY=0s ./bin/invoicing-api serve >"$work/api.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$APIPORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$APIPORT/readyz" >/dev/null || { cat "$work/api.log"; exit 1; }
api="http://127.0.0.1:$APIPORT"

# One measurement is ROUNDS alternating slices (API, then pgbench) so that
# load drifting on a shared machine biases neither side.
ROUNDS=${BENCH_ROUNDS:-3}
SLICE=$(( DURATION / ROUNDS > 0 ? DURATION / ROUNDS : 1 ))

# wrk_slice NAME LUA PATH ROUND -> appends "rps p50_ms p99_ms" to $work/api-NAME
wrk_slice() {
  wrk -t"$THREADS" -c"$CLIENTS" -d"${SLICE}s" --latency -s "$2" "$api$3" >"$work/wrk-$1-$4.txt"
  python3 - "$work/wrk-$1-$4.txt" >>"$work/api-$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[u]
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if non2xx:
    sys.exit("wrk: %s non-2xx responses:\n%s" % (non2xx.group(1), t))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
print(rps, ms(re.search(r"\s50%\s+(\S+)", t).group(1)), ms(re.search(r"\s99%\s+(\S+)", t).group(1)))
PY
}

# pgb_slice NAME SQL ROUND [pgbench args] -> appends "tps p50_ms p99_ms" to $work/pgb-NAME
pgb_slice() {
  local name=$1 sql=$2 round=$3; shift 3
  (cd "$work" && rm -f pgbench_log.* && "$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$SLICE" \
     -l --log-prefix="pgbench_log" -f "$OLDPWD/$sql" "$@" invoicing >"pgb-$name-$round.txt" 2>&1) || true
  python3 - "$work" "$work/pgb-$name-$round.txt" >>"$work/pgb-$name" <<'PY'
import glob, re, sys
t = open(sys.argv[2]).read()
m = re.search(r"tps = ([\d.]+)", t)
if not m:
    sys.exit("pgbench failed:\n" + t)
lat = sorted(int(l.split()[2]) for f in glob.glob(sys.argv[1] + "/pgbench_log.*") for l in open(f))
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(float(m.group(1)), p(0.5), p(0.99))
PY
}

# measure NAME LUA PATH SQL [pgbench args]: warm both up, then alternate.
measure() {
  local name=$1 lua=$2 path=$3 sql=$4; shift 4
  wrk -t"$THREADS" -c"$CLIENTS" -d2s -s "$lua" "$api$path" >/dev/null
  "$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$THREADS" -T 2 -f "$sql" "$@" invoicing >/dev/null 2>&1
  for r in $(seq "$ROUNDS"); do
    wrk_slice "$name" "$lua" "$path" "$r"
    pgb_slice "$name" "$sql" "$r" "$@"
  done
}

echo "== create: POST /v1/invoices (3 lines) vs the same INSERT (invoice + 3 lines + event); $ROUNDS x ${SLICE}s each, $CLIENTS clients"
measure create scripts/bench-api/create.lua /v1/invoices scripts/bench-api/create.sql

"$PGBIN/psql" -qAtc "SELECT id FROM invoices WHERE id ~ '^inv_[a-z2-7]{24}\$' ORDER BY random() LIMIT 10000" invoicing >"$work/ids.txt"
maxpk=$("$PGBIN/psql" -qAtc 'SELECT max(pk) FROM invoices' invoicing)
echo "== get: GET /v1/invoices/{id} vs the same SELECT of an invoice + lines by key ($maxpk invoices)"
BENCH_IDS="$work/ids.txt" measure get scripts/bench-api/get.lua /v1/invoices/x scripts/bench-api/get.sql -D maxpk="$maxpk"

echo "== list: GET /v1/invoices (page of 10) vs the same SELECT"
printf 'wrk.method = "GET"\n' >"$work/list.lua"
measure list "$work/list.lua" /v1/invoices scripts/bench-api/list.sql

echo
python3 - "$work" <<'PY'
import statistics, sys
w = sys.argv[1]
def load(f):
    rows = [list(map(float, l.split())) for l in open(f)]
    return statistics.mean(r[0] for r in rows), statistics.median(r[1] for r in rows), statistics.median(r[2] for r in rows)
print(f"{'operation':<9} {'API req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'pgbench tps':>11} {'p50 ms':>7} {'p99 ms':>7} | {'API/pgbench':>11}")
below = []
for op in ("create", "get", "list"):
    a, b = load(f"{w}/api-{op}"), load(f"{w}/pgb-{op}")
    ratio = a[0] / b[0]
    target = op in ("create", "get")
    if target and ratio < 0.8:
        below.append(op)
    print(f"{op:<9} {a[0]:>10.0f} {a[1]:>7.2f} {a[2]:>7.2f} | {b[0]:>11.0f} {b[1]:>7.2f} {b[2]:>7.2f} | {ratio:>11.2f}" + ("  (target >= 0.80)" if target else ""))
if below:
    print("below the 0.80 target:", ", ".join(below))
PY
