#!/usr/bin/env bash
# The end-to-end test bed: real parts a deployment tool is tested against.
#
#   registry  Debian's docker-registry with htpasswd auth on 127.0.0.1:PORT
#             (plain HTTP: the engine treats loopback registries as insecure),
#             plus, when the EC2 host is up, a TLS listener on the host side
#             of its link (GATEWAY:PORT, CA under /etc/docker/certs.d) so the
#             simulated host can pull from it.
#   ec2       a simulated EC2 host: an independent dockerd (own data, exec
#             root, socket and bridge, no images) in its own network
#             namespace, reachable only through an sshd there with key
#             authentication and a host key known to the tests.
#
#   swarm     three simulated EC2 hosts (sw1..sw3) on one Linux bridge, each
#             with its own dockerd and sshd as the ec2 host has, for Docker
#             Swarm: nodes at 10.252.SLOT.11-13/24, this machine at
#             10.252.SLOT.1 on bridge swSLOTbr. The machine's FORWARD policy
#             is DROP and bridged frames pass iptables (br_netfilter), so an
#             ACCEPT rule for the bridge is inserted and removed on swarm-down.
#             The swarm itself is not formed here: that is the product's job.
#
# Usage: testbed.sh up|down|ec2-up|ec2-down|registry-up|registry-down|swarm-up|swarm-down SLOT
#
# SLOT (1..200) selects the instance: its directory
# ${INVDEPLOY_TESTBED_ROOT:-/var/lib/invdeploy-testbed}/slot-SLOT, its
# namespace ivdbed-SLOT and its addresses 10.250.SLOT.0/30 (link) and
# 10.251.SLOT.0/24 (the host engine's bridge). Callers hold the slot (the Go
# helper flocks it); `up` first tears down whatever a crashed run left in
# the slot, and `down` is safe to run any number of times. `up` writes
# SLOTDIR/testbed.env with everything a test needs (no secret values: the
# registry password is in a 0600 file named there). Traffic goes only to
# loopback and to the link addresses created here.
set -euo pipefail

die() { echo "testbed: error: $*" >&2; exit 1; }
log() { [ -n "${TESTBED_QUIET:-}" ] || echo "testbed: $*" >&2; }

[ $# -eq 2 ] || die "usage: $0 up|down|ec2-up|ec2-down|registry-up|registry-down|swarm-up|swarm-down SLOT"
cmd=$1 slot=$2
[[ "$slot" =~ ^[0-9]+$ ]] && [ "$slot" -ge 1 ] && [ "$slot" -le 200 ] || die "SLOT must be 1..200, got $slot"
[ "$(id -u)" = 0 ] || die "the test bed needs root (network namespaces, a second dockerd)"

root=${INVDEPLOY_TESTBED_ROOT:-/var/lib/invdeploy-testbed}
dir=$root/slot-$slot
netns=ivdbed-$slot
veth_host=ivdbed$slot-h
veth_ns=ivdbed$slot-g
gateway=10.250.$slot.1
addr=10.250.$slot.2
bip=10.251.$slot.1/24
sock=$dir/docker.sock

# stop_pid FILE: stop the process whose pid FILE holds, if it is still one of
# ours (its command line names this slot's directory), TERM then KILL.
stop_pid() {
	local file=$1 pid i
	[ -f "$file" ] || return 0
	pid=$(cat "$file" 2>/dev/null || true)
	rm -f "$file"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# start NAME CMD...: run CMD in the background, detached from our stdio, its
# output in SLOTDIR/NAME.log and its pid in SLOTDIR/NAME.pid.
start() {
	local name=$1
	shift
	"$@" </dev/null >"$dir/$name.log" 2>&1 &
	echo $! >"$dir/$name.pid"
}

wait_for() {
	local what=$1 seconds=$2 i
	shift 2
	for i in $(seq $((seconds * 5))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	return 1
}

# answers_401 URL: the registry is up and asks for a login.
answers_401() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" = 401 ]; }

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

registry_port() {
	if [ -f "$dir/registry.port" ]; then
		cat "$dir/registry.port"
		return
	fi
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! tcp_open 127.0.0.1 "$p" && ! ss -Hltn "sport = :$p" | grep -q .; then
			echo "$p" >"$dir/registry.port"
			echo "$p"
			return
		fi
	done
	die "no free port for the registry"
}

# sshd_config ADDR HOSTKEY PIDFILE AUTHORIZED_KEYS SOCKET: a simulated host's
# sshd: key login only, stream-local forwarding allowed (the engine socket).
sshd_config() {
	cat <<-EOF
		Port 22
		ListenAddress $1
		HostKey $2
		PidFile $3
		AuthorizedKeysFile $4
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PermitEmptyPasswords no
		PermitRootLogin prohibit-password
		UsePAM no
		StrictModes no
		AllowTcpForwarding yes
		AllowStreamLocalForwarding yes
		X11Forwarding no
		LogLevel VERBOSE
		SetEnv DOCKER_HOST=unix://$5
	EOF
}

# ssh_client_config ADDR KEY KNOWN_HOSTS: a client config for the docker CLI
# and ssh (ssh -F): key only, host key pinned.
ssh_client_config() {
	cat <<-EOF
		Host $1
		  User root
		  IdentityFile $2
		  IdentitiesOnly yes
		  UserKnownHostsFile $3
		  StrictHostKeyChecking yes
		  PasswordAuthentication no
		  BatchMode yes
	EOF
}

ec2_down() {
	stop_pid "$dir/sshd.pid"
	stop_pid "$dir/dockerd.pid"
	# What dockerd left mounted (layers, shm) in the slot directory.
	if [ -d "$dir" ]; then
		awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
	fi
	ip netns del "$netns" 2>/dev/null || true
	ip link del "$veth_host" 2>/dev/null || true
	rm -rf "$dir/ec2"
}

ec2_up() {
	local driver
	ip netns add "$netns"
	ip link add "$veth_host" type veth peer name "$veth_ns"
	ip link set "$veth_ns" netns "$netns"
	ip addr add "$gateway/30" dev "$veth_host"
	ip link set "$veth_host" up
	ip -n "$netns" link set lo up
	ip -n "$netns" addr add "$addr/30" dev "$veth_ns"
	ip -n "$netns" link set "$veth_ns" up
	# No default route: the host reaches nothing but this link.

	mkdir -p "$dir/ec2/ssh"
	driver=$(docker info --format '{{.Driver}}' 2>/dev/null || true)
	# Its own config file, so the machine's /etc/docker/daemon.json does not apply.
	printf '{%s}\n' "${driver:+\"storage-driver\": \"$driver\"}" >"$dir/ec2/daemon.json"
	# Its own hostname too (a UTS namespace), so `docker info` names the host.
	start dockerd nsenter --net="/var/run/netns/$netns" unshare --uts \
		sh -c 'hostname "$0" && exec "$@"' "ec2-host-$slot" dockerd \
		--label "invdeploy.testbed=ec2-host-$slot" \
		--config-file "$dir/ec2/daemon.json" \
		--data-root "$dir/ec2/data" --exec-root "$dir/ec2/exec" --pidfile "$dir/ec2/dockerd.pid" \
		-H "unix://$sock" --bip "$bip" --iptables=false --ip-masq=false \
		--shutdown-timeout 5

	ssh-keygen -q -t ed25519 -N '' -C "ec2-host-$slot" -f "$dir/ec2/ssh/host_key"
	ssh-keygen -q -t ed25519 -N '' -C "testbed-client-$slot" -f "$dir/ec2/ssh/client_key"
	cp "$dir/ec2/ssh/client_key.pub" "$dir/ec2/ssh/authorized_keys"
	chmod 0600 "$dir/ec2/ssh/authorized_keys"
	echo "$addr $(cut -d' ' -f1,2 "$dir/ec2/ssh/host_key.pub")" >"$dir/ec2/ssh/known_hosts"
	sshd_config "$addr" "$dir/ec2/ssh/host_key" "$dir/ec2/sshd.pid" "$dir/ec2/ssh/authorized_keys" "$sock" >"$dir/ec2/ssh/sshd_config"
	ssh_client_config "$addr" "$dir/ec2/ssh/client_key" "$dir/ec2/ssh/known_hosts" >"$dir/ec2/ssh/config"
	# An ssh that uses that config, for tools that run `ssh` from PATH (the
	# docker CLI with DOCKER_HOST=ssh://...): OpenSSH ignores $HOME.
	mkdir -p "$dir/ec2/bin"
	printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$dir/ec2/ssh/config" >"$dir/ec2/bin/ssh"
	chmod 0755 "$dir/ec2/bin/ssh"
	mkdir -p /run/sshd
	start sshd nsenter --net="/var/run/netns/$netns" /usr/sbin/sshd -D -f "$dir/ec2/ssh/sshd_config" -E "$dir/sshd.log"

	if ! wait_for dockerd 60 docker -H "unix://$sock" version; then
		tail -n 20 "$dir/dockerd.log" >&2 || true
		die "the simulated EC2 host's dockerd did not answer on $sock within 60s"
	fi
	if ! wait_for sshd 20 tcp_open "$addr" 22; then
		tail -n 20 "$dir/sshd.log" >&2 || true
		die "the simulated EC2 host's sshd did not listen on $addr:22 within 20s"
	fi
	log "ec2 host up: ssh://root@$addr (engine $sock)"
}

registry_down() {
	stop_pid "$dir/registry-tls.pid"
	stop_pid "$dir/registry.pid"
	if [ -f "$dir/registry.port" ]; then
		rm -rf "/etc/docker/certs.d/$gateway:$(cat "$dir/registry.port")"
	fi
	rm -rf "$dir/registry" "$dir/registry.port"
}

# registry_config ADDR [TLS]: a docker-registry config listening on ADDR.
registry_config() {
	cat <<-EOF
		version: 0.1
		log:
		  level: info
		  accesslog:
		    disabled: false
		storage:
		  filesystem:
		    rootdirectory: $dir/registry/data
		  delete:
		    enabled: true
		http:
		  addr: $1
		  secret: $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	EOF
	if [ -n "${2:-}" ]; then
		cat <<-EOF
			  tls:
			    certificate: $dir/registry/tls/server.crt
			    key: $dir/registry/tls/server.key
		EOF
	fi
	cat <<-EOF
		auth:
		  htpasswd:
		    realm: invdeploy-testbed
		    path: $dir/registry/htpasswd
	EOF
}

registry_tls_cert() {
	local d=$dir/registry/tls
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=invdeploy test bed CA $slot" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-subj "/CN=$gateway" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$gateway" >"$d/ext.cnf"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 2 -extfile "$d/ext.cnf" -out "$d/server.crt" 2>/dev/null
}

registry_up() {
	local port user=testbed
	port=$(registry_port)
	mkdir -p "$dir/registry/data"
	(umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$dir/registry/password")
	htpasswd -iBc "$dir/registry/htpasswd" "$user" <"$dir/registry/password" 2>/dev/null
	registry_config "127.0.0.1:$port" >"$dir/registry/config.yml"
	start registry docker-registry serve "$dir/registry/config.yml"
	if [ -e "/var/run/netns/$netns" ]; then
		registry_tls_cert
		registry_config "$gateway:$port" tls >"$dir/registry/config-tls.yml"
		mkdir -p "/etc/docker/certs.d/$gateway:$port"
		cp "$dir/registry/tls/ca.crt" "/etc/docker/certs.d/$gateway:$port/ca.crt"
		start registry-tls docker-registry serve "$dir/registry/config-tls.yml"
	fi
	if ! wait_for registry 30 answers_401 "http://127.0.0.1:$port/v2/"; then
		tail -n 20 "$dir/registry.log" >&2 || true
		die "the registry did not answer on 127.0.0.1:$port within 30s"
	fi
	if [ -e "/var/run/netns/$netns" ] && ! wait_for registry-tls 30 tcp_open "$gateway" "$port"; then
		tail -n 20 "$dir/registry-tls.log" >&2 || true
		die "the registry's TLS listener did not answer on $gateway:$port within 30s"
	fi
	log "registry up: 127.0.0.1:$port (user $user)"
}

write_env() {
	{
		echo "TESTBED_SLOT=$slot"
		echo "TESTBED_DIR=$dir"
		if [ -f "$dir/registry/config.yml" ]; then
			echo "REGISTRY_ADDR=127.0.0.1:$(cat "$dir/registry.port")"
			echo "REGISTRY_USER=testbed"
			echo "REGISTRY_PASSWORD_FILE=$dir/registry/password"
			echo "REGISTRY_LOG=$dir/registry.log"
		fi
		if [ -f "$dir/registry/config-tls.yml" ]; then
			echo "REGISTRY_EC2_ADDR=$gateway:$(cat "$dir/registry.port")"
			echo "REGISTRY_EC2_CA=$dir/registry/tls/ca.crt"
		fi
		if [ -f "$dir/ec2/ssh/sshd_config" ]; then
			echo "EC2_ADDR=$addr"
			echo "EC2_GATEWAY=$gateway"
			echo "EC2_NETNS=$netns"
			echo "EC2_USER=root"
			echo "EC2_SOCKET=$sock"
			echo "EC2_SSH_KEY=$dir/ec2/ssh/client_key"
			echo "EC2_KNOWN_HOSTS=$dir/ec2/ssh/known_hosts"
			echo "EC2_SSH_CONFIG=$dir/ec2/ssh/config"
			echo "EC2_SSH_PATH=$dir/ec2/bin"
			echo "EC2_SSHD_LOG=$dir/sshd.log"
			echo "EC2_DOCKERD_LOG=$dir/dockerd.log"
		fi
		write_swarm_env
	} >"$dir/testbed.env"
}


# --- swarm: three hosts on a bridge -------------------------------------------

sw_bridge=sw${slot}br
sw_net=10.252.$slot

sw_node_down() {
	local i=$1 nd=$dir/swarm/n$1
	stop_pid "$nd/sshd.pid"
	stop_pid "$nd/dockerd.pid"
	ip netns del "sw${slot}n$i" 2>/dev/null || true
	ip link del "sw${slot}n${i}h" 2>/dev/null || true
}

swarm_down() {
	local i
	# In parallel: a swarm node's dockerd takes a few seconds to stop.
	for i in 1 2 3; do sw_node_down "$i" & done
	wait
	if [ -d "$dir/swarm" ]; then
		awk -v d="$dir/swarm/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
	fi
	while iptables -D FORWARD -i "$sw_bridge" -o "$sw_bridge" -j ACCEPT 2>/dev/null; do :; done
	ip link del "$sw_bridge" 2>/dev/null || true
	rm -rf "$dir/swarm"
}

# sw_node_kill I: SIGKILL the processes in host I's network namespace and
# all their descendants (the containers, in namespaces of their own), but
# its sshd, by pid.
sw_node_kill() {
	local i=$1 nd=$dir/swarm/n$1 sshd roots pids
	sshd=$(cat "$nd/sshd.pid" 2>/dev/null || echo none)
	roots=$(ip netns pids "sw${slot}n$i" | grep -vx "$sshd" | tr '\n' ' ')
	[ -n "$roots" ] || return 0
	pids=$(ps -e -o pid=,ppid= | awk -v roots="$roots" -v sshd="$sshd" '
		{ parent[$1] = $2 }
		END {
			n = split(roots, r, " "); for (k = 1; k <= n; k++) keep[r[k]] = 1
			for (p in parent) {
				q = p; hit = 0; under = 0
				while (q != "" && q != 0) {
					if (q == sshd) { under = 1; break }
					if (q in keep) hit = 1
					if (q == 1) break
					q = parent[q]
				}
				if (hit && !under) print p
			}
		}')
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
}

# sw_dockerd_start I: start host I's dockerd (again: same data, same swarm).
sw_dockerd_start() {
	local i=$1 nd=$dir/swarm/n$1
	nsenter --net="/var/run/netns/sw${slot}n$i" unshare --uts \
		sh -c 'hostname "$0" && exec "$@"' "sw$i" dockerd \
		--label "invdeploy.testbed=sw$i" --config-file "$nd/daemon.json" \
		--data-root "$nd/data" --exec-root "$nd/exec" --pidfile "$nd/dockerd.pid.engine" \
		-H "unix://$nd/docker.sock" --bip "10.24$i.$slot.1/24" --iptables=false --ip-masq=false \
		--shutdown-timeout 5 </dev/null >>"$nd/dockerd.log" 2>&1 &
	echo $! >"$nd/dockerd.pid"
}

# sw_node_up I: host swI at $sw_net.1I with its dockerd and sshd.
sw_node_up() {
	local i=$1 nd=$dir/swarm/n$1 ns=sw${slot}n$1 addr=$sw_net.1$1 driver
	ip netns add "$ns"
	ip link add "sw${slot}n${i}h" type veth peer name "sw${slot}n${i}g"
	ip link set "sw${slot}n${i}g" netns "$ns"
	ip link set "sw${slot}n${i}h" master "$sw_bridge"
	ip link set "sw${slot}n${i}h" up
	ip -n "$ns" link set lo up
	ip -n "$ns" link set "sw${slot}n${i}g" name eth0
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
	mkdir -p "$nd/ssh"
	driver=$(docker info --format '{{.Driver}}' 2>/dev/null || true)
	printf '{%s}\n' "${driver:+\"storage-driver\": \"$driver\"}" >"$nd/daemon.json"
	sw_dockerd_start "$i"
	ssh-keygen -q -t ed25519 -N '' -C "sw$i-$slot" -f "$nd/ssh/host_key"
	echo "$addr $(cut -d' ' -f1,2 "$nd/ssh/host_key.pub")" >>"$dir/swarm/known_hosts"
	sshd_config "$addr" "$nd/ssh/host_key" "$nd/sshd.pid.own" "$dir/swarm/authorized_keys" "$nd/docker.sock" >"$nd/ssh/sshd_config"
	ssh_client_config "$addr" "$dir/swarm/client_key" "$dir/swarm/known_hosts" >>"$dir/swarm/ssh_config"
}

sw_node_wait() {
	local i=$1 nd=$dir/swarm/n$1
	if ! wait_for dockerd 60 docker -H "unix://$nd/docker.sock" version; then
		tail -n 20 "$nd/dockerd.log" >&2 || true
		die "swarm host sw$i: dockerd did not answer within 60s"
	fi
	# sshd in a mount namespace of its own where /var/run/docker.sock is this
	# host's engine, as on a real host: an ssh:// URL without a socket path
	# must never reach this machine's engine. A symlink on a private /run,
	# so a restarted dockerd's new socket is found too.
	[ -s "$nd/sshd.pid" ] && return 0
	nsenter --net="/var/run/netns/sw${slot}n$i" unshare --mount --propagation private \
		sh -c 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/sshd && ln -s "$0" /run/docker.sock && exec /usr/sbin/sshd "$@"' "$nd/docker.sock" \
		-D -f "$nd/ssh/sshd_config" -E "$nd/sshd.log" </dev/null >/dev/null 2>&1 &
	echo $! >"$nd/sshd.pid"
	if ! wait_for sshd 20 tcp_open "$sw_net.1$i" 22; then
		tail -n 20 "$nd/sshd.log" >&2 || true
		die "swarm host sw$i: sshd did not listen on $sw_net.1$i:22 within 20s"
	fi
	local name
	name=$(nsenter -t "$(cat "$nd/sshd.pid")" -m docker -H unix:///var/run/docker.sock info --format '{{.Name}}' 2>&1 || true)
	[ "$name" = "sw$i" ] || die "swarm host sw$i: /var/run/docker.sock as its sshd sees it is not its own engine ($name)"
}

swarm_up() {
	local i
	mkdir -p "$dir/swarm"
	ip link add "$sw_bridge" type bridge
	ip addr add "$sw_net.1/24" dev "$sw_bridge"
	ip link set "$sw_bridge" up
	iptables -I FORWARD 1 -i "$sw_bridge" -o "$sw_bridge" -j ACCEPT
	ssh-keygen -q -t ed25519 -N '' -C "testbed-swarm-client-$slot" -f "$dir/swarm/client_key"
	cp "$dir/swarm/client_key.pub" "$dir/swarm/authorized_keys"
	chmod 0600 "$dir/swarm/authorized_keys"
	: >"$dir/swarm/known_hosts"
	: >"$dir/swarm/ssh_config"
	for i in 1 2 3; do sw_node_up "$i"; done
	for i in 1 2 3; do sw_node_wait "$i"; done
	log "swarm hosts up: ssh://root@$sw_net.11 .12 .13"
}

write_swarm_env() {
	local i
	[ -f "$dir/swarm/ssh_config" ] || return 0
	echo "SWARM_SSH_KEY=$dir/swarm/client_key"
	echo "SWARM_KNOWN_HOSTS=$dir/swarm/known_hosts"
	echo "SWARM_SSH_CONFIG=$dir/swarm/ssh_config"
	echo "SWARM_GATEWAY=$sw_net.1"
	for i in 1 2 3; do
		echo "SWARM_NODE${i}_ADDR=$sw_net.1$i"
		echo "SWARM_NODE${i}_NETNS=sw${slot}n$i"
		echo "SWARM_NODE${i}_SOCKET=$dir/swarm/n$i/docker.sock"
		echo "SWARM_NODE${i}_DOCKERD_LOG=$dir/swarm/n$i/dockerd.log"
	done
}

down_all() {
	swarm_down
	registry_down
	ec2_down
	rm -rf "$dir"
}

case "$cmd" in
up)
	down_all
	mkdir -p "$dir"
	ec2_up
	registry_up
	write_env
	;;
ec2-up)
	ec2_down
	mkdir -p "$dir"
	ec2_up
	write_env
	;;
registry-up)
	registry_down
	mkdir -p "$dir"
	registry_up
	write_env
	;;
swarm-up)
	swarm_down
	mkdir -p "$dir"
	swarm_up
	write_env
	;;
swarm-node-kill)
	# TESTBED_NODE=I: SIGKILL everything host I runs but its sshd (dockerd,
	# containerd, shims, the containers): a lost machine, which
	# swarm-node-start brings back with the same data.
	[[ "${TESTBED_NODE:-}" =~ ^[123]$ ]] || die "swarm-node-kill needs TESTBED_NODE=1..3"
	sw_node_kill "$TESTBED_NODE"
	;;
swarm-node-start)
	[[ "${TESTBED_NODE:-}" =~ ^[123]$ ]] || die "swarm-node-start needs TESTBED_NODE=1..3"
	sw_dockerd_start "$TESTBED_NODE"
	sw_node_wait "$TESTBED_NODE"
	;;
swarm-down)
	swarm_down
	[ ! -d "$dir" ] || write_env
	;;
down) down_all ;;
ec2-down)
	ec2_down
	[ ! -d "$dir" ] || write_env
	;;
registry-down)
	registry_down
	[ ! -d "$dir" ] || write_env
	;;
*) die "unknown command $cmd (up|down|ec2-up|ec2-down|registry-up|registry-down|swarm-up|swarm-down)" ;;
esac
