#!/usr/bin/env bash
# make bench-inner-loop: seconds from a committed one-line change in api/ to
# the new API healthy (`invdeploy up`), through the engine's BuildKit with the
# Dockerfile's Go cache mounts, against the classic builder
# (DOCKER_BUILDKIT=0 invdeploy up) doing the same kind of change, in the same
# run on a temporary copy of this commit. Both builders are warmed on the
# unchanged copy first (layer cache, module download, BuildKit cache mounts),
# so each timed run is what a developer meets on the second edit of the day.
# Also prints what a remote redeploy over SSH sends (the image archive of the
# new image, as `remote up --via ssh` streams it) against the size of the layer
# the change actually made.
# Targets: BuildKit edit->healthy <= 12 s and <= 0.1 x classic; remote bytes
# <= the changed layer + 10 %.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
inv=${INVDEPLOY:-$root/bin/invdeploy}
project=${BENCH_PROJECT:-bench-inner}
port=${BENCH_PORT:-18510}
image=${BENCH_IMAGE:-invdeploy-bench-inner-api}

[ -x "$inv" ] || { echo "bench-inner-loop: $inv not built (make build)" >&2; exit 1; }
for img in golang:1.26-bookworm postgres:15; do
	docker image inspect "$img" >/dev/null 2>&1 || { echo "bench-inner-loop: image $img missing (make images)" >&2; exit 1; }
done

work=$(mktemp -d)
repo=$work/repo
cleanup() {
	(cd "$repo" 2>/dev/null && "$inv" -q down -p "$project" --volumes >/dev/null 2>&1) || true
	docker image ls -q "$image" | sort -u | xargs -r docker image rm -f >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# A copy of this commit in its own git repository; the stack is the bundled
# one with its own image name, so the bench never retags invoicing-api.
mkdir -p "$repo"
git -C "$root" archive HEAD | tar -x -C "$repo"
sed "s#image: invoicing-api:#image: $image:#" "$root/stacks/invoicing/compose.yaml" >"$repo/compose.yaml"
g() { git -C "$repo" -c user.name=bench -c user.email=bench@invalid -c commit.gpgsign=false "$@"; }
g init -q && g add -A && g commit -qm base
export XDG_CONFIG_HOME=$work/config INVOICING_API_PORT=$port
export INVOICING_DB_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
export GOPROXY=${GOPROXY:-$(go env GOPROXY 2>/dev/null || echo https://proxy.golang.org,direct)}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
sha() { git -C "$repo" rev-parse --short=12 HEAD; }

# edit N: the one-line change, committed (the welcome text names N).
edit() {
	sed -i "s/Welcome to the Invoicing API![^\"]*\"/Welcome to the Invoicing API! edit $1\"/" "$repo/api/http/handlers.go"
	grep -q "edit $1\"" "$repo/api/http/handlers.go" || { echo "bench-inner-loop: the edit did not apply" >&2; exit 1; }
	g commit -qam "edit $1"
}

# up BUILDKIT [FLAG...]: invdeploy up of the current commit; prints its seconds.
up() {
	local t0 t1 kit=$1
	shift
	t0=$(now)
	(cd "$repo" && DOCKER_BUILDKIT=$kit INVOICING_API_TAG=$(sha) "$inv" -q up -p "$project" "$@" >/dev/null)
	t1=$(now)
	elapsed "$t0" "$t1"
}

# serves N: the API answers with edit N.
serves() {
	local body
	body=$(curl -fsS "http://127.0.0.1:$port/")
	[ "$body" = "Welcome to the Invoicing API! edit $1" ] || { echo "bench-inner-loop: the API serves \"$body\", not edit $1" >&2; exit 1; }
}

echo "bench-inner-loop: $("$inv" --version), a one-line change in api/ of a copy of the repository to healthy, BuildKit + cache mounts vs the classic builder"
echo "warming both builders on the unchanged copy (not timed)"
edit 0
(cd "$repo" && DOCKER_BUILDKIT=0 INVOICING_API_TAG=$(sha) "$inv" -q build -p "$project" >/dev/null)
# --build: the classic build above tagged this commit's image too.
warm=$(up 1 --build)
serves 0
echo "first up with BuildKit (builds the unchanged copy, starts the database): ${warm}s"

old=$image:$(sha)
edit 1
kit=$(up 1)
serves 1
new=$image:$(sha)
echo "one-line change, BuildKit + cache mounts: edit->healthy ${kit}s"

edit 2
classic=$(up 0)
serves 2
echo "same change, classic builder:             edit->healthy ${classic}s"

ratio=$(awk -v a="$kit" -v b="$classic" 'BEGIN {printf "%.3f", a / b}')
printf 'inner loop: BuildKit %.2fs, classic %.2fs, ratio %.3f (targets <= 12 s and <= 0.1)\n' "$kit" "$classic" "$ratio"

# Remote redeploy of edit 1: TransferSSH streams `docker save` of the images
# the host lacks; the layer the change made is the one whose diff ID the
# previous image does not have.
mkdir -p "$work/save"
docker save "$new" -o "$work/new.tar"
tar -xf "$work/new.tar" -C "$work/save"
sent=$(stat -c %s "$work/new.tar")
oldlayers=$(docker image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' "$old")
changed=0
while read -r layer; do
	d="sha256:$(sha256sum "$work/save/$layer" | cut -d' ' -f1)"
	if ! grep -qx "$d" <<<"$oldlayers"; then
		changed=$((changed + $(stat -c %s "$work/save/$layer")))
	fi
done < <(cd "$work/save" && ls -1 */layer.tar)
rratio=$(awk -v a="$sent" -v b="$changed" 'BEGIN {printf "%.3f", a / b}')
printf 'remote redeploy of the change (--via ssh): sends %d bytes, changed layer %d bytes, ratio %.3f (target <= 1.1)\n' "$sent" "$changed" "$rratio"
