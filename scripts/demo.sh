#!/usr/bin/env bash
# The main job: start hyprd in a network namespace of its own and show hypr at work.
# Everything it creates lives in that namespace and is removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh

NS="hypr-demo-$$"
WORK=$(mktemp -d /tmp/hypr-demo.XXXXXX)
export HYPR_RUN_DIR="$WORK/run" HYPR_DATA_DIR="$WORK/data"
HYPR=.venv/bin/hypr

cleanup() {
    set +e
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    sleep 0.2
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" .venv/bin/hyprd 2>"$WORK/hyprd.log" &
for _ in $(seq 100); do $HYPR version >/dev/null 2>&1 && break; sleep 0.1; done

step $HYPR version
step $HYPR network ls
step $HYPR network create frontend
step $HYPR network create backend --internal --subnet 10.90.0.0/24
step $HYPR network ls
step $HYPR network inspect backend
step $HYPR images
step $HYPR run -d --name web --network frontend busybox httpd -f -v
step $HYPR run -d --name api --network frontend --network backend busybox sleep 3600
step $HYPR run -d --name db --network backend --ip 10.90.0.10 busybox sleep 3600
step $HYPR ps
step $HYPR exec api -- ip -o -4 addr
WEB_IP=$($HYPR inspect web | sed -n 's/.*"guest_ip": "\(.*\)".*/\1/p')
step $HYPR exec api -- ping -c 1 -W 2 "$WEB_IP"
step $HYPR exec api -- ping -c 1 -W 2 10.90.0.10
echo "(web and db share no network, so web cannot reach db:)"
step sh -c "$HYPR exec web -- ping -c 1 -W 2 10.90.0.10 || echo 'unreachable, as it should be'"
step $HYPR run --rm --network backend busybox sh -c 'echo hello from a VM with its own kernel: $(uname -r)'
step ip netns exec "$NS" ip -br link show type bridge
step ip netns exec "$NS" nft list table inet hypr
step $HYPR stop -t 2 web api db
step $HYPR ps -a
step $HYPR rm web api db
step $HYPR network rm frontend backend
step $HYPR info
echo
echo "demo finished; namespace $NS and everything in it is removed now"
