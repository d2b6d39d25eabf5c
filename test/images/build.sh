#!/usr/bin/env bash
# Makes every image that the bundled stack, the Dockerfile and the tests need
# exist in the local Docker engine, under the names a registry would serve:
#
#   debian:bookworm (also debian:bookworm-slim, debian:12)   base of the others
#   golang:1.26-bookworm (also golang:1.26)                 the Dockerfile's builder
#   postgres:15 (also postgres:15-bookworm)                  the stack's database
#   prom/prometheus:v2.42.0                                  the monitoring profile's Prometheus
#   prometheuscommunity/postgres-exporter:v0.11.1            and its PostgreSQL exporter
#   nginx:1.22                                               the in-stack rollout test's reverse proxy
#
# An image already present is kept. A missing one is pulled when a registry
# answers; when none does, it is built here from Debian packages: debootstrap
# for the base, the host's Go for golang, Debian's postgresql-15 for postgres,
# Debian's prometheus and prometheus-postgres-exporter for the monitoring ones,
# Debian's nginx for nginx.
# Locally built images carry the label org.invdeploy.local-recipe (a hash of
# their recipe) and are rebuilt when the recipe changes; pulled ones have no
# such label and are never touched. A run with nothing to do takes seconds.
#
# Environment: INVDEPLOY_IMAGES=auto (default: pull, else build) | build | pull.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=${INVDEPLOY_IMAGES:-auto}
label=org.invdeploy.local-recipe
export DOCKER_BUILDKIT=0 # the legacy builder: no buildx needed, and the Engine API 1.41 path invdeploy uses

log() { echo "images: $*" >&2; }
die() { echo "images: error: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found (install Docker, then run make images again)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "the Docker engine does not answer (is dockerd running, may this user use it?)"

# Serialize concurrent runs (several test runs or developers on one engine).
exec 9>"${TMPDIR:-/tmp}/invdeploy-images.lock"
flock 9

# Scratch space for root filesystems and build contexts, removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/invdeploy-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

present() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect -f '{{.Id}}' "$1"; }
image_recipe() { docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$1" 2>/dev/null || true; }

# recipe_hash FUNCTION WORDS...: the hash of a builder function's code, of the
# files of a recipe directory and of extra inputs (base image id, Go version).
recipe_hash() {
	{
		declare -f "$1"
		shift
		for w in "$@"; do
			if [ -d "$here/$w" ]; then
				(cd "$here" && find "$w" -type f -print0 | sort -z | xargs -0 sha256sum)
			else
				echo "$w"
			fi
		done
	} | sha256sum | cut -c1-16
}

registry_answers=unknown
# try_pull NAME: pull NAME when the mode allows and a registry answers.
try_pull() {
	[ "$mode" != build ] || return 1
	[ "$registry_answers" != no ] || return 1
	log "pulling $1"
	if docker pull -q "$1" >/dev/null 2>"$work/pull.err"; then
		registry_answers=yes
		return 0
	fi
	if [ "$mode" = pull ]; then
		die "pull $1: $(cat "$work/pull.err")"
	fi
	log "no registry answers ($(head -c 200 "$work/pull.err")); building images locally from Debian packages"
	registry_answers=no
	return 1
}

# ensure NAME RECIPE BUILDER ALIAS...: make NAME (and its aliases) exist.
ensure() {
	local name=$1 recipe=$2 builder=$3
	shift 3
	if present "$name"; then
		local have
		have=$(image_recipe "$name")
		if [ -z "$have" ] || [ "$have" = "$recipe" ]; then
			tag_aliases "$name" "$@"
			return 0
		fi
		log "$name was built from an older recipe ($have, now $recipe): rebuilding"
	elif try_pull "$name"; then
		tag_aliases "$name" "$@"
		return 0
	fi
	local start=$SECONDS
	log "building $name"
	"$builder" "$name" "$recipe"
	log "built $name in $((SECONDS - start))s"
	tag_aliases "$name" "$@"
}

tag_aliases() {
	local name=$1 id alias
	shift
	id=$(image_id "$name")
	for alias; do
		if ! present "$alias" || [ "$(image_id "$alias")" != "$id" ]; then
			if [ -n "$(image_recipe "$alias")" ] || ! present "$alias"; then
				docker tag "$name" "$alias"
			fi
		fi
	done
}

# apt_mirror: the Debian mirror this machine's apt uses for bookworm main.
apt_mirror() {
	local uri
	uri=$(
		{
			cat /etc/apt/sources.list 2>/dev/null || true
			for f in /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && cat "$f"; done
		} | awk '$1 == "deb" && $0 ~ / bookworm / && $0 ~ / main/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }'
	)
	if [ -z "$uri" ]; then
		# deb822 files: a stanza with Suites: bookworm and Components: main.
		uri=$(for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && cat "$f" && echo; done | awk '
			BEGIN { RS = ""; FS = "\n" }
			{
				u = ""; s = 0; m = 0
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
					if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) s = 1
					if ($i ~ /^Components:/ && $i ~ /[ \t]main([ \t]|$)/) m = 1
					if ($i ~ /^Enabled:[ \t]*no/) s = 0
				}
				if (u != "" && s && m) { print u; exit }
			}')
	fi
	[ -n "$uri" ] || die "cannot find a Debian bookworm mirror in /etc/apt/sources.list(.d)"
	echo "$uri"
}

build_debian() {
	local name=$1 recipe=$2 root mirror
	command -v debootstrap >/dev/null || die "debootstrap is missing (make deps installs it)"
	[ "$(id -u)" = 0 ] || die "building $name with debootstrap needs root"
	mirror=$(apt_mirror)
	root=$work/rootfs
	log "debootstrap --variant=minbase bookworm (about a minute)"
	if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
		tail -n 20 "$work/debootstrap.log" >&2
		die "debootstrap failed"
	fi
	# The image uses the same Debian sources as this machine (with security updates).
	rm -f "$root/etc/apt/sources.list"
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		if grep -qiE '^[^#]*(debian|bookworm)' "$f" && grep -qE 'bookworm' "$f"; then
			cp "$f" "$root/etc/apt/${f#/etc/apt/}"
		fi
	done
	[ -n "$(ls -A "$root/etc/apt/sources.list.d" 2>/dev/null)" ] || [ -f "$root/etc/apt/sources.list" ] ||
		echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
	# Like the official image: no package lists or caches, a small apt.
	printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90invdeploy-slim"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log "$root"/tmp/* "$root"/dev/*
	echo "$name" >"$root/etc/hostname"
	tar --numeric-owner --xattrs -C "$root" -c . | docker import \
		--change 'CMD ["bash"]' \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change "LABEL $label=$recipe" \
		- "$name" >/dev/null
}

# quiet_build NAME CONTEXT: docker build, showing the output only on failure.
quiet_build() {
	if ! docker build --force-rm -t "$1" "$2" >"$work/build.log" 2>&1; then
		tail -n 30 "$work/build.log" >&2
		die "docker build of $1 failed"
	fi
}

build_golang() {
	local name=$1 recipe=$2 ctx version
	ctx=$work/golang
	mkdir -p "$ctx"
	version=$(go_version)
	sed "s/@GOLANG_VERSION@/$version/" "$here/golang/Dockerfile" >"$ctx/Dockerfile"
	echo "LABEL $label=$recipe" >>"$ctx/Dockerfile"
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
	# The context streams the host's Go tree straight from /usr/local/go.
	tar -c -C "$ctx" Dockerfile ca-certificates.crt -C "$(dirname "$goroot")" --transform "s,^$(basename "$goroot"),go," "$(basename "$goroot")" |
		quiet_build "$name" -
}

# build_from_dir NAME RECIPE DIR: docker build of the recipe directory DIR
# (the monitoring stand-ins; postgres keeps its own function so its recipe
# hash, and so the image, stays the same).
build_from_dir() {
	local name=$1 recipe=$2 ctx=$work/$3
	mkdir -p "$ctx"
	cp -a "$here/$3/." "$ctx/"
	echo "LABEL $label=$recipe" >>"$ctx/Dockerfile"
	quiet_build "$name" "$ctx"
}

build_postgres() {
	local name=$1 recipe=$2 ctx
	ctx=$work/postgres
	mkdir -p "$ctx"
	cp -a "$here/postgres/." "$ctx/"
	echo "LABEL $label=$recipe" >>"$ctx/Dockerfile"
	quiet_build "$name" "$ctx"
}

build_prometheus() { build_from_dir "$1" "$2" prometheus; }
build_postgres_exporter() { build_from_dir "$1" "$2" postgres-exporter; }
build_nginx() { build_from_dir "$1" "$2" nginx; }

goroot=$(go env GOROOT 2>/dev/null || echo /usr/local/go)
go_version() { sed -n '1s/^go//p' "$goroot/VERSION"; }

ensure debian:bookworm "$(recipe_hash build_debian "$(declare -f apt_mirror)")" build_debian debian:bookworm-slim debian:12
base=$(image_id debian:bookworm)
ensure golang:1.26-bookworm "$(recipe_hash build_golang golang "$base" "$(go_version)")" build_golang golang:1.26
ensure postgres:15 "$(recipe_hash build_postgres postgres "$base")" build_postgres postgres:15-bookworm
ensure prom/prometheus:v2.42.0 "$(recipe_hash build_prometheus prometheus "$base" "$(declare -f build_from_dir)")" build_prometheus
ensure prometheuscommunity/postgres-exporter:v0.11.1 "$(recipe_hash build_postgres_exporter postgres-exporter "$base" "$(declare -f build_from_dir)")" build_postgres_exporter
ensure nginx:1.22 "$(recipe_hash build_nginx nginx "$base" "$(declare -f build_from_dir)")" build_nginx
log "ready: debian:bookworm golang:1.26-bookworm postgres:15 prom/prometheus:v2.42.0 prometheuscommunity/postgres-exporter:v0.11.1 nginx:1.22"
