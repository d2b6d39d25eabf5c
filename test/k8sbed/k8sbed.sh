#!/usr/bin/env bash
# A real one-node Kubernetes for the tests of `invdeploy k8s` (the verified
# recipe of the project's design notes): Kubernetes built from the Go module
# proxy, etcd and the CNI plugins from Debian packages unpacked (never
# installed), a private containerd with its own root, state and socket, the
# CNI bridge plugin and kube-proxy in iptables mode.
#
# Usage: k8sbed.sh build          build (or find) the binaries, cached by version
#        k8sbed.sh up DIR         start a bed in DIR (DIR/kubeconfig when ready)
#        k8sbed.sh down DIR       stop it and leave the host as it was
#        k8sbed.sh import DIR IMAGE...   copy images from the local engine into the node
#
# The binaries (~485 MB) live outside the repository in
# ${INVDEPLOY_K8SBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/invdeploy/k8sbed}/VERSION,
# so a cold machine pays the build once (~6 min quiet, up to 15 under load)
# and a warm one nothing. One bed runs at a time on a machine (its ports and
# addresses are fixed); callers hold ${cache}/bed.lock with flock.
#
# `down` undoes what `up` and the kubelet did: processes stopped by their
# recorded pids, sysctls the kubelet changed restored, kube-proxy's and the
# kubelet's KUBE-* chains and the FORWARD rule removed, mounts under DIR
# unmounted, the bridges deleted.
set -euo pipefail

die() { echo "k8sbed: error: $*" >&2; exit 1; }
log() { [ -n "${K8SBED_QUIET:-}" ] || echo "k8sbed: $*" >&2; }

K8S_VERSION=v1.34.4
STAGING_VERSION=v0.34.4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${INVDEPLOY_K8SBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/invdeploy/k8sbed}
cache=$cache_root/$K8S_VERSION
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# build: the Kubernetes binaries, etcd and the CNI plugins into $cache, once.
build() {
	if [ -f "$cache/complete" ]; then return 0; fi
	mkdir -p "$cache_root"
	exec 9>"$cache_root/build.lock"
	flock 9
	if [ -f "$cache/complete" ]; then return 0; fi
	local start=$SECONDS work
	work=$(mktemp -d "$cache_root/build.XXXXXX")
	log "building Kubernetes $K8S_VERSION into $cache (once per machine: ~6-15 min)"
	mkdir -p "$work/src" "$work/bin" "$work/debs" "$work/root"
	{
		echo "module invdeploy.local/k8sbed"
		echo
		echo "go 1.24.0"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		cat "$here/go.mod.replace.txt"
	} >"$work/src/go.mod"
	sed "s/v0\.34\.4/$STAGING_VERSION/" -i "$work/src/go.mod"
	cat >"$work/src/tools.go" <<-'GO'
		//go:build tools

		package tools

		import (
			_ "k8s.io/kubernetes/cmd/kube-apiserver"
			_ "k8s.io/kubernetes/cmd/kube-controller-manager"
			_ "k8s.io/kubernetes/cmd/kube-proxy"
			_ "k8s.io/kubernetes/cmd/kube-scheduler"
			_ "k8s.io/kubernetes/cmd/kubectl"
			_ "k8s.io/kubernetes/cmd/kubelet"
		)
	GO
	(
		cd "$work/src"
		export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
		go mod tidy
		local pkgs=()
		for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
		go build -trimpath -o "$work/bin/" -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" "${pkgs[@]}"
	)
	(
		cd "$work/debs"
		apt-get download etcd-server containernetworking-plugins >/dev/null
		for d in ./*.deb; do dpkg -x "$d" "$work/root"; done
	)
	[ -x "$work/root/usr/bin/etcd" ] || die "etcd-server did not unpack to usr/bin/etcd"
	[ -x "$work/root/usr/lib/cni/bridge" ] || die "containernetworking-plugins did not unpack to usr/lib/cni"
	rm -rf "$work/src" "$work/debs" "$cache"
	touch "$work/complete"
	mv "$work" "$cache"
	log "built in $((SECONDS - start)) s"
}

@@REST@@