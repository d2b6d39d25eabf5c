#!/usr/bin/env bash
# Builds a real S3-compatible server for the backup tests: SeaweedFS's weed
# (Apache-2.0), from the Go module proxy, into $S3BED (default
# ~/.cache/invdeploy/s3bed)/bin/weed. Its module has a replace directive, so
# go install MOD@VERSION refuses it: a throwaway wrapper module outside the
# repository requires it with the same requirements and replace. Nothing of
# it is committed. Idempotent: quick when that version is built.
set -euo pipefail
VERSION=v0.0.0-20261109003541-7506e5f91cd6
MOD=github.com/seaweedfs/seaweedfs
S3BED=${S3BED:-$HOME/.cache/invdeploy/s3bed}
bin=$S3BED/bin/weed
if [ -x "$bin" ] && [ "$(cat "$S3BED/version" 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
export PATH=/usr/local/go/bin:$PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
modfile=$(GOFLAGS=-mod=mod go mod download -json "$MOD@$VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
sed -e '1s#.*#module s3bed#' -e '/^\/\/ replace/d' "$modfile" > go.mod
printf '\nrequire %s %s\n' "$MOD" "$VERSION" >> go.mod
printf 'package s3bed\n' > doc.go
echo "s3bed: building SeaweedFS weed $VERSION (several minutes the first time)"
mkdir -p "$S3BED/bin"
GOFLAGS=-mod=mod go build -o "$bin.new" "$MOD/weed"
mv "$bin.new" "$bin"
echo "$VERSION" > "$S3BED/version"
