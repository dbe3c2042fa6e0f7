#!/bin/bash
# The tutorial's three-host cluster on one machine (`make cluster`, `make cluster-stop`).
#
# Each host is a network namespace (core-01..03) on a bridge, with an address of its own
# (10.88.8.101..103), and runs what a CoreOS host of the tutorial ran: an etcd member, its own
# Docker engine (own data root, socket and docker0, entered with nsenter so that it sees the
# machine's cgroups), lodestar-dns on port 53 and lodestar-registrator. Only addresses inside these
# namespaces (and the bridge's 10.88.8.1) are used.
#
#   scripts/cluster.sh up     BIN=dir-of-binaries   (stops a previous one first)
#   scripts/cluster.sh down   removes everything: processes, namespaces, bridge, data
#
# Settings (environment): CLUSTER_PREFIX (namespace names, default "": core-01), CLUSTER_NET
# (first three octets, default 10.88.8), CLUSTER_BRIDGE (default lodestar0), CLUSTER_DIR (state,
# default /run/lodestar-cluster), CLUSTER_HOSTS (default 3).
set -euo pipefail

PREFIX=${CLUSTER_PREFIX:-}
NET=${CLUSTER_NET:-10.88.8}
BRIDGE=${CLUSTER_BRIDGE:-lodestar0}
DIR=${CLUSTER_DIR:-/run/lodestar-cluster}
HOSTS=${CLUSTER_HOSTS:-3}
DOMAIN=webapp.dev
IMAGE=lodestar-demo/busybox:latest

host() { printf '%score-%02d' "$PREFIX" "$1"; }
ip_of() { echo "$NET.$((100 + $1))"; }

say() { echo "cluster: $*"; }

# Starts "$@" in the background in host $1, logging to $DIR/<host>/<name>.log; pid in <name>.pid.
start() {
  local h=$1 name=$2; shift 2
  local d="$DIR/$(host "$h")"
  # nsenter execs the program: $! is the program's own pid.
  nsenter --net="/run/netns/$(host "$h")" -- "$@" >"$d/$name.log" 2>&1 &
  echo $! >"$d/$name.pid"
}

# Fails with the end of its log when the process $2 of host $1 is not running.
alive() {
  local d="$DIR/$(host "$1")"
  if ! kill -0 "$(cat "$d/$2.pid")" 2>/dev/null; then
    say "$2 on $(host "$1") exited; the end of $d/$2.log:"
    tail -n 20 "$d/$2.log" >&2
    exit 1
  fi
}

wait_for() { # what, command...: up to 30 s
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "$what did not come up within 30 s"; return 1
}

down() {
  for h in $(seq 1 "$HOSTS"); do
    local d="$DIR/$(host "$h")"
    # Containers first, at once (an engine that stops them waits 10 s for each that ignores SIGTERM).
    if [ -S "$d/docker.sock" ]; then
      docker -H "unix://$d/docker.sock" ps -aq 2>/dev/null | xargs -r docker -H "unix://$d/docker.sock" rm -f >/dev/null 2>&1 || true
    fi
    for p in registrator dns etcd dockerd; do
      [ -f "$d/$p.pid" ] && kill "$(cat "$d/$p.pid")" 2>/dev/null || true
    done
  done
  # Wait for them (the engines stop their containers and containerd) before removing their state.
  for h in $(seq 1 "$HOSTS"); do
    for p in registrator dns etcd dockerd; do
      local f="$DIR/$(host "$h")/$p.pid"
      [ -f "$f" ] || continue
      for _ in $(seq 1 150); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$(cat "$f")" 2>/dev/null || true
    done
  done
  for h in $(seq 1 "$HOSTS"); do
    ip netns del "$(host "$h")" 2>/dev/null || true
    ip link del "${BRIDGE}h$h" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
  for h in $(seq 1 "$HOSTS"); do
    local d="$DIR/$(host "$h")"
    # Anything an engine left mounted under its data root goes first.
    if [ -d "$d" ]; then
      { grep -o " $d/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
      rm -rf "$d"
    fi
  done
  rmdir "$DIR" 2>/dev/null || true
}

up() {
  : "${BIN:?BIN must name the directory of lodestar-dns and lodestar-registrator}"
  for b in lodestar-dns lodestar-registrator; do
    [ -x "$BIN/$b" ] || { say "$BIN/$b does not exist: build it first (make build)"; exit 1; }
  done
  down
  mkdir -p "$DIR"
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  local cluster="" endpoints=()
  for h in $(seq 1 "$HOSTS"); do
    local n; n=$(host "$h")
    mkdir -p "$DIR/$n"
    ip netns add "$n"
    ip link add "${BRIDGE}h$h" type veth peer name "${BRIDGE}n$h"
    ip link set "${BRIDGE}h$h" master "$BRIDGE" up
    ip link set "${BRIDGE}n$h" netns "$n"
    ip -n "$n" link set "${BRIDGE}n$h" name eth0
    ip -n "$n" addr add "$(ip_of "$h")/24" dev eth0
    ip -n "$n" link set eth0 up
    ip -n "$n" link set lo up
    cluster+="${cluster:+,}$n=http://$(ip_of "$h"):2380"
    endpoints+=("http://$(ip_of "$h"):2379")
  done

  # Docker engines first (they take a few seconds), one per host, then the etcd members.
  local docker=0
  if command -v dockerd >/dev/null; then
    docker=1
    for h in $(seq 1 "$HOSTS"); do
      local d="$DIR/$(host "$h")"
      start "$h" dockerd dockerd --data-root "$d/docker" --exec-root "$d/x" \
        --pidfile "$d/docker.pidfile" -H "unix://$d/docker.sock"
    done
  fi
  for h in $(seq 1 "$HOSTS"); do
    local u="http://$(ip_of "$h")"
    start "$h" etcd etcd --name "$(host "$h")" --data-dir "$DIR/$(host "$h")/etcd" \
      --listen-client-urls "$u:2379" --advertise-client-urls "$u:2379" \
      --listen-peer-urls "$u:2380" --initial-advertise-peer-urls "$u:2380" \
      --initial-cluster "$cluster" --initial-cluster-token "lodestar-$NET" --log-level warn
  done
  for h in $(seq 1 "$HOSTS"); do
    alive "$h" etcd
    wait_for "the etcd member of $(host "$h")" \
      env ETCDCTL_API=3 etcdctl --endpoints "${endpoints[$((h - 1))]}" endpoint health || { alive "$h" etcd; exit 1; }
  done
  say "etcd: ${HOSTS} members, healthy"

  # Each host's own member first, then the others (the tutorial's convention).
  for h in $(seq 1 "$HOSTS"); do
    local list="" i
    for k in $(seq 0 $((HOSTS - 1))); do
      i=$(( (h - 1 + k) % HOSTS ))
      list+="${list:+,}${endpoints[$i]}"
    done
    local ip; ip=$(ip_of "$h")
    start "$h" dns env RUST_LOG=info "$BIN/lodestar-dns" --listen "$ip:53" --metrics "$ip:9153" \
      --domain "$DOMAIN" --etcd "$list" --no-forward
    echo "$list" >"$DIR/$(host "$h")/endpoints"
  done
  for h in $(seq 1 "$HOSTS"); do
    alive "$h" dns
    wait_for "lodestar-dns on $(host "$h")" dig +time=1 +tries=1 "@$(ip_of "$h")" "$DOMAIN" SOA || { alive "$h" dns; exit 1; }
  done
  say "lodestar-dns: answering on $(for h in $(seq 1 "$HOSTS"); do printf '%s:53 ' "$(ip_of "$h")"; done)"

  if [ "$docker" = 1 ]; then
    local rootfs; rootfs=$(mktemp -d)
    mkdir -p "$rootfs/bin" "$rootfs/tmp"
    cp "$(command -v busybox)" "$rootfs/bin/busybox"
    for a in sh sleep nc; do ln -s busybox "$rootfs/bin/$a"; done
    for h in $(seq 1 "$HOSTS"); do
      local d="$DIR/$(host "$h")"
      alive "$h" dockerd
      wait_for "the Docker engine of $(host "$h")" docker -H "unix://$d/docker.sock" info || { alive "$h" dockerd; exit 1; }
      tar -C "$rootfs" -c . | docker -H "unix://$d/docker.sock" import - "$IMAGE" >/dev/null
      start "$h" registrator env RUST_LOG=info "$BIN/lodestar-registrator" --docker "unix://$d/docker.sock" \
        --etcd "$(cat "$d/endpoints")" --domain "$DOMAIN" --ip "$(ip_of "$h")" \
        --host-id "$(host "$h")" --metrics "$(ip_of "$h"):9154"
    done
    rm -rf "$rootfs"
    for h in $(seq 1 "$HOSTS"); do alive "$h" registrator; done
    say "Docker engines and lodestar-registrator: one per host (image $IMAGE imported in each)"
  else
    say "no dockerd here: the registrators are not started"
  fi

  local last; last=$(host "$HOSTS")
  cat <<EOF

The cluster is up: $(for h in $(seq 1 "$HOSTS"); do printf '%s=%s ' "$(host "$h")" "$(ip_of "$h")"; done)
(state and logs in $DIR/<host>/). Try the tutorial:

  # run redis on $last (its own Docker engine):
  docker -H unix://$DIR/$last/docker.sock run -d -p 6379 -e SERVICE_ID=redis-1 -e SERVICE_NAME=redis $IMAGE sleep 3600

  # ask any host:
  dig @$(ip_of 1) redis.$DOMAIN
  dig @$(ip_of 1) redis-1.redis.$DOMAIN SRV

  # a shell on a host:   ip netns exec $(host 1) sh
  # stop everything:     make cluster-stop
EOF
}

case "${1:-}" in
  up) up ;;
  down) down; say "removed" ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
