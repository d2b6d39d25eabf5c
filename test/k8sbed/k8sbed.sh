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

# The bed's fixed addresses and ports (one bed per machine; the ports are in
# the range this project's tests use for it).
node_ip=10.254.254.1
node_br=k8sbed0
cni_br=bedcni0
api_port=23443
etcd_port=23790
etcd_peer=23800
pv_count=${K8SBED_PVS:-16}

# stop_pid FILE: stop the process whose pid FILE holds if its command line
# still names the bed's directory (TERM, then KILL after 10 s).
stop_pid() {
	local file=$1 pid i
	[ -f "$file" ] || return 0
	pid=$(cat "$file" 2>/dev/null || true)
	rm -f "$file"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$bed" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# start NAME CMD...: CMD in the background, its output in DIR/log/NAME.log
# and its pid in DIR/run/NAME.pid.
start() {
	local name=$1
	shift
	"$@" </dev/null >"$bed/log/$name.log" 2>&1 &
	echo $! >"$bed/run/$name.pid"
}

wait_for() {
	local what=$1 seconds=$2 i
	shift 2
	for i in $(seq $((seconds * 5))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	echo "k8sbed: $what did not come up in ${seconds}s; last lines of its log:" >&2
	tail -n 20 "$bed/log/$what.log" >&2 2>/dev/null || true
	return 1
}

# render FILE: a configuration of the bed with $BED replaced by its directory.
render() { sed "s#\$BED/root#$cache/root#g; s#\$BED#$bed#g" "$here/$1"; }

kubectl_bed() { "$cache/bin/kubectl" --kubeconfig "$bed/kubeconfig" "$@"; }

pki() {
	local p=$bed/pki
	mkdir -p "$p"
	(
		cd "$p"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=k8sbed-ca" 2>/dev/null
		cat >apiserver.ext <<-EXT
			subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:bednode,IP:127.0.0.1,IP:10.96.0.1,IP:$node_ip
			extendedKeyUsage=serverAuth,clientAuth
		EXT
		issue() { # name subject ext
			openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
			openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 30 ${3:+-extfile "$3"} 2>/dev/null
		}
		echo "extendedKeyUsage=clientAuth" >client.ext
		issue apiserver "/CN=kube-apiserver" apiserver.ext
		issue admin "/O=system:masters/CN=k8sbed-admin" client.ext
		issue kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client.ext
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		chmod 600 ./*.key
	)
	cat >"$bed/kubeconfig" <<-KC
		apiVersion: v1
		kind: Config
		clusters:
		- name: k8sbed
		  cluster:
		    certificate-authority: $p/ca.crt
		    server: https://$node_ip:$api_port
		users:
		- name: k8sbed-admin
		  user:
		    client-certificate: $p/admin.crt
		    client-key: $p/admin.key
		contexts:
		- name: k8sbed
		  context: {cluster: k8sbed, user: k8sbed-admin}
		current-context: k8sbed
	KC
	chmod 600 "$bed/kubeconfig"
}

# pause_image: the pod sandbox image, a static binary of our own FROM
# scratch, built by the local engine and imported into the bed's containerd.
pause_image() {
	local d=$bed/pause
	mkdir -p "$d"
	(cd "$here/pause" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$d/pause" .)
	printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$d/Dockerfile"
	docker build -q -t invdeploy-k8sbed/pause:1 "$d" >/dev/null
	import_images invdeploy-k8sbed/pause:1
}

import_images() {
	docker save "$@" | ctr -a "$bed/containerd/containerd.sock" -n k8s.io images import - >/dev/null
}

save_sysctls() {
	[ -f "$bed/sysctl.saved" ] && return 0
	sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops | paste -sd' ' >"$bed/sysctl.saved.tmp"
	mv "$bed/sysctl.saved.tmp" "$bed/sysctl.saved"
}

restore_sysctls() {
	[ -f "$bed/sysctl.saved" ] || return 0
	local a b c
	read -r a b c <"$bed/sysctl.saved"
	sysctl -q -w vm.overcommit_memory="$a" kernel.panic="$b" kernel.panic_on_oops="$c" || true
	rm -f "$bed/sysctl.saved"
}

# remove_chains: the KUBE-* and CNI-* chains the kubelet, kube-proxy and the
# CNI plugins made, and the jumps to them from the built-in chains.
remove_chains() {
	local ipt table rule chain
	for ipt in iptables ip6tables; do
		command -v $ipt >/dev/null || continue
		for table in filter nat mangle; do
			$ipt -t $table -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' | while read -r rule; do
				# shellcheck disable=SC2086
				$ipt -t $table ${rule/-A/-D} 2>/dev/null || true
			done || true
			for chain in $($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) {print $2}'); do
				$ipt -t $table -F "$chain" 2>/dev/null || true
			done
			for chain in $($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) {print $2}'); do
				$ipt -t $table -X "$chain" 2>/dev/null || true
			done
		done
	done
	if command -v nft >/dev/null; then
		nft delete table ip kube-proxy 2>/dev/null || true
		nft delete table ip6 kube-proxy 2>/dev/null || true
	fi
}

forward_rules() { # -I or -D
	local op=$1 dir
	for dir in -i -o; do
		if [ "$op" = -D ]; then
			while iptables -D FORWARD "$dir" "$cni_br" -j ACCEPT 2>/dev/null; do :; done
		else
			iptables -I FORWARD 1 "$dir" "$cni_br" -j ACCEPT
		fi
	done
}

down() {
	[ -d "$bed" ] || return 0
	stop_pid "$bed/run/kube-proxy.pid"
	stop_pid "$bed/run/kubelet.pid"
	if [ -S "$bed/containerd/containerd.sock" ]; then
		local t
		for t in $(ctr -a "$bed/containerd/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$bed/containerd/containerd.sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
		done
		sleep 0.5
		for t in $(ctr -a "$bed/containerd/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$bed/containerd/containerd.sock" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
		done
	fi
	stop_pid "$bed/run/containerd.pid"
	# The shims of the bed's containerd outlive it: stop them by pid.
	local pid
	for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $bed/containerd/" 2>/dev/null || true); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	stop_pid "$bed/run/dns.pid"
	stop_pid "$bed/run/kube-scheduler.pid"
	stop_pid "$bed/run/kube-controller-manager.pid"
	stop_pid "$bed/run/kube-apiserver.pid"
	stop_pid "$bed/run/etcd.pid"
	if [ -x "$cache/bin/kube-proxy" ]; then
		"$cache/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
	fi
	remove_chains
	forward_rules -D
	restore_sysctls
	# Mounts under the bed (pod volumes, sandbox netns, shm, overlay
	# snapshots), deepest first.
	local m
	for m in $(awk -v b="$bed/" 'index($5, b) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	ip link del "$cni_br" 2>/dev/null || true
	ip link del "$node_br" 2>/dev/null || true
	# The pods' cgroups the kubelet made (empty once the tasks are gone).
	local c
	for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	rm -rf "$bed"
}

up() {
	build
	down
	mkdir -p "$bed"/{log,run,cfg,etcd,cni/net.d,cni/ipam,containerd,kubelet,pod-logs,pv}
	save_sysctls
	local t0=$SECONDS
	ip link add "$node_br" type bridge
	ip addr add "$node_ip/32" dev "$node_br"
	ip link set "$node_br" up
	forward_rules -I
	pki
	grep -v '^\s*#' /etc/resolv.conf | grep -E '^(nameserver|search|options)' >"$bed/cfg/resolv.conf" || true
	render containerd.toml >"$bed/cfg/containerd.toml"
	cat >>"$bed/cfg/containerd.toml" <<-REG
		  [plugins."io.containerd.grpc.v1.cri".registry]
		    config_path = "$bed/certs.d"
	REG
	mkdir -p "$bed/certs.d"
	render cni.conflist >"$bed/cni/net.d/10-bednet.conflist"
	render kubelet.yaml >"$bed/cfg/kubelet.yaml"
	render kube-proxy.yaml >"$bed/cfg/kube-proxy.yaml"
	local r=$cache/root/usr/bin b=$cache/bin p=$bed/pki
	start etcd "$r/etcd" --name bed --data-dir "$bed/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-cluster "bed=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync
	start containerd containerd --config "$bed/cfg/containerd.toml"
	start kube-apiserver "$b/kube-apiserver" --bind-address="$node_ip" --advertise-address="$node_ip" --secure-port="$api_port" \
		--etcd-servers="http://127.0.0.1:$etcd_port" --service-cluster-ip-range=10.96.0.0/24 \
		--authorization-mode=Node,RBAC --kubelet-preferred-address-types=InternalIP \
		--client-ca-file="$p/ca.crt" --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
		--kubelet-client-certificate="$p/kubelet-client.crt" --kubelet-client-key="$p/kubelet-client.key" \
		--service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--allow-privileged=true --profiling=false --enable-priority-and-fairness=false
	wait_for etcd 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$etcd_port"
	wait_for kube-apiserver 90 kubectl_bed get --raw /readyz
	# Cluster DNS: Services' names, from the API server (no CoreDNS here).
	(cd "$here/dns" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -o "$bed/dns-server" .)
	start dns "$bed/dns-server" -listen "$node_ip:53" -kubeconfig "$bed/kubeconfig"
	start kube-controller-manager "$b/kube-controller-manager" --kubeconfig="$bed/kubeconfig" --leader-elect=false \
		--bind-address=127.0.0.1 --secure-port=23257 --service-account-private-key-file="$p/sa.key" \
		--root-ca-file="$p/ca.crt" --use-service-account-credentials=true --cluster-signing-cert-file="$p/ca.crt" \
		--cluster-signing-key-file="$p/ca.key" --controllers='*,-nodeipam,-cloud-node-lifecycle'
	start kube-scheduler "$b/kube-scheduler" --kubeconfig="$bed/kubeconfig" --leader-elect=false \
		--bind-address=127.0.0.1 --secure-port=23259
	wait_for containerd 30 ctr -a "$bed/containerd/containerd.sock" version
	pause_image
	start kubelet "$b/kubelet" --config="$bed/cfg/kubelet.yaml" --kubeconfig="$bed/kubeconfig" \
		--hostname-override=bednode --node-ip="$node_ip" --root-dir="$bed/kubelet"
	start kube-proxy "$b/kube-proxy" --config="$bed/cfg/kube-proxy.yaml"
	wait_for kubelet 90 kubectl_bed wait --for=condition=Ready node/bednode --timeout=1s
	storage
	log "ready in $((SECONDS - t0)) s: KUBECONFIG=$bed/kubeconfig"
}

# storage: the bed's answer to PersistentVolumeClaims: a default
# StorageClass without a provisioner and a pool of local PersistentVolumes
# on this node (local volumes honour fsGroup, so a non-root database owns
# its data directory, as on a cloud disk).
storage() {
	local i
	{
		cat <<-SC
			apiVersion: storage.k8s.io/v1
			kind: StorageClass
			metadata:
			  name: bed-local
			  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
			provisioner: kubernetes.io/no-provisioner
			volumeBindingMode: WaitForFirstConsumer
			reclaimPolicy: Retain
		SC
		for i in $(seq -w 1 "$pv_count"); do
			mkdir -p "$bed/pv/$i"
			cat <<-PV
				---
				apiVersion: v1
				kind: PersistentVolume
				metadata: {name: bed-pv-$i}
				spec:
				  capacity: {storage: 10Gi}
				  accessModes: [ReadWriteOnce]
				  persistentVolumeReclaimPolicy: Retain
				  storageClassName: bed-local
				  local: {path: $bed/pv/$i}
				  nodeAffinity:
				    required:
				      nodeSelectorTerms:
				      - matchExpressions:
				        - {key: kubernetes.io/hostname, operator: In, values: [bednode]}
			PV
		done
	} | kubectl_bed apply -f - >/dev/null
}

# registry HOST:PORT: the bed's containerd pulls from that registry over
# plain HTTP (a hosts.toml under the CRI registry config_path).
registry() {
	local host=$1
	mkdir -p "$bed/certs.d/$host"
	cat >"$bed/certs.d/$host/hosts.toml" <<-H
		server = "http://$host"

		[host."http://$host"]
		  capabilities = ["pull", "resolve"]
		  skip_verify = true
	H
}

bed=${2:-${INVDEPLOY_K8SBED_ROOT:-/var/lib/invdeploy-k8sbed}}
case "${1:-}" in
build) build ;;
up)
	[ "$(id -u)" = 0 ] || die "the bed needs root (bridges, iptables, containerd)"
	up
	;;
down)
	[ "$(id -u)" = 0 ] || die "the bed needs root"
	down
	;;
import)
	shift 2
	import_images "$@"
	;;
registry) registry "$3" ;;
*) die "usage: $0 build | up [DIR] | down [DIR] | import DIR IMAGE... | registry DIR HOST:PORT" ;;
esac
