#!/usr/bin/env bash
# Installs the Debian packages that the tests, the test bed and the benchmarks
# need. Idempotent and quick when everything is present; needs root (or sudo).
set -euo pipefail

PKGS=(
  debootstrap          # builds the base image the local golang/postgres images derive from
  postgresql-15        # PostgreSQL for the API's integration tests and pgbench
  openssh-server       # sshd of the simulated EC2 host
  openssh-client
  docker-registry      # the authenticated registry of the test bed
  apache2-utils        # htpasswd for that registry
  iproute2             # ip netns / veth for the simulated EC2 host
  util-linux           # nsenter
  iptables
  wrk                  # HTTP load for make bench-api
  prometheus           # promtool: the tests check the bundled stack's Prometheus config and alert rules
  docker-compose       # the reference of make bench-deploy
  ca-certificates
  git
  curl
  containerd           # the Kubernetes bed's private containerd (its own root and socket; Debian's has the CRI plugin)
  runc
  openssl              # the Kubernetes bed's certificates
  jq                   # the API examples in README.md and docs/guides/api.md (run by TestDocExamples)
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Third-party apt sources may be unreachable here; Debian's own are what we need.
$SUDO apt-get update -o Acquire::Retries=3 >/dev/null 2>&1 || $SUDO apt-get update -o Acquire::Retries=3 || true
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
# The Debian packages start services we do not want: the tests start their own.
for svc in docker-registry postgresql ssh prometheus prometheus-node-exporter; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
