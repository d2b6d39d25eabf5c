#!/usr/bin/env bash
# Entry point of the locally built postgres:15 image. It keeps the contract of
# the official image, which users' compose files rely on:
#   POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE  superuser password (required unless
#                                               POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER(_FILE)   superuser name, default postgres
#   POSTGRES_DB(_FILE)     database created at init, default $POSTGRES_USER
#   POSTGRES_INITDB_ARGS(_FILE), POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD
#   PGDATA                 default /var/lib/postgresql/data
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once, after initdb
# initdb runs only when PGDATA holds no cluster; started as root, the script
# fixes ownership and re-executes itself as the postgres user. The password is
# never echoed.
set -Eeo pipefail

die() { echo "docker-entrypoint: error: $*" >&2; exit 1; }

# read_secret VAR [DEFAULT]: export VAR from $VAR or from the file named by
# ${VAR}_FILE (setting both is an error), then drop ${VAR}_FILE.
read_secret() {
	local var=$1 file_var="${1}_FILE" value=${2:-}
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		die "both $var and $file_var are set; use one"
	fi
	if [ -n "${!var:-}" ]; then
		value=${!var}
	elif [ -n "${!file_var:-}" ]; then
		[ -r "${!file_var}" ] || die "$file_var names ${!file_var}, which is not readable"
		value=$(<"${!file_var}")
	fi
	export "$var=$value"
	unset "$file_var"
}

# wants_help: the arguments only ask postgres for information, so no cluster
# is needed (postgres --version, -C setting, --describe-config).
wants_help() {
	local arg
	for arg; do
		case "$arg" in
		-'?' | --help | --describe-config | -V | --version | -C | -C*) return 0 ;;
		esac
	done
	return 1
}

run_psql() {
	psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

init_cluster() {
	read_secret POSTGRES_PASSWORD
	read_secret POSTGRES_USER postgres
	read_secret POSTGRES_DB "$POSTGRES_USER"
	read_secret POSTGRES_INITDB_ARGS
	local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
		die "the database is uninitialized and no superuser password is set.
  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE, e.g. a secret at /run/secrets/...)
  to a non-empty value, or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without one."
	fi

	local -a args=(--username="$POSTGRES_USER")
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		args+=(--waldir="$POSTGRES_INITDB_WALDIR")
	fi
	# POSTGRES_INITDB_ARGS is a word list by contract, hence unquoted. The
	# password goes through a pipe, never a file or an argument.
	# shellcheck disable=SC2086
	if [ -n "$POSTGRES_PASSWORD" ]; then
		initdb "${args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
	else
		initdb "${args[@]}" $POSTGRES_INITDB_ARGS
	fi
	printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

	# A server for the database and the init scripts only: no TCP, and its
	# socket in a private directory, so pg_isready (the usual healthcheck)
	# answers only once the real server runs.
	local init_socket_dir
	init_socket_dir=$(mktemp -d /var/run/postgresql/init.XXXXXX)
	export PGHOST=$init_socket_dir
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$init_socket_dir -p ${PGPORT:-5432}" -w start
	if [ "$POSTGRES_DB" != postgres ]; then
		run_psql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			echo "docker-entrypoint: running $f"
			if [ -x "$f" ]; then "$f"; else . "$f"; fi
			;;
		*.sql)
			echo "docker-entrypoint: running $f"
			run_psql --dbname "$POSTGRES_DB" -f "$f"
			;;
		*.sql.gz)
			echo "docker-entrypoint: running $f"
			gunzip -c "$f" | run_psql --dbname "$POSTGRES_DB"
			;;
		*/\*) ;;
		*) echo "docker-entrypoint: ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	unset POSTGRES_PASSWORD PGHOST
	rm -rf "$init_socket_dir"
	echo "docker-entrypoint: PostgreSQL init process complete; ready for start up."
}

if [ "${1:0:1}" = - ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ] && ! wants_help "$@"; then
	if [ "$(id -u)" = 0 ]; then
		install -d -m 0700 "$PGDATA"
		find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
		chmod 0700 "$PGDATA"
		install -d -m 3777 /var/run/postgresql
		find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
		exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		mkdir -p "$PGDATA"
		chmod 0700 "$PGDATA" 2>/dev/null || :
		init_cluster
	else
		echo "docker-entrypoint: PostgreSQL data directory holds a cluster; skipping initialization"
	fi
fi

exec "$@"
