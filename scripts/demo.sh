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
    [ -n "${HYPRD:-}" ] && kill -TERM "$HYPRD" 2>/dev/null && wait "$HYPRD" 2>/dev/null
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
HYPRD=$!
for _ in $(seq 100); do $HYPR version >/dev/null 2>&1 && break; sleep 0.1; done

step $HYPR version
step $HYPR network ls
step $HYPR network create frontend
step $HYPR network create backend --internal --subnet 10.90.0.0/24
step $HYPR network ls
step $HYPR network inspect backend
step $HYPR images
step $HYPR run -d --name web --network frontend -p 8080:80 busybox \
    sh -c 'echo hello from the web VM > /index.html; exec httpd -f -h /'
step $HYPR run -d --name api --network frontend --network backend busybox sleep 3600
step $HYPR run -d --name db --network backend --ip 10.90.0.10 busybox sleep 3600
step $HYPR ps
step $HYPR exec api -- ip -o -4 addr
step $HYPR exec api -- nslookup db
step $HYPR exec api -- ping -c 1 -W 2 web.hypr
step $HYPR exec api -- wget -qO- http://web/
step ip netns exec "$NS" curl -s http://127.0.0.1:8080/
echo "(web and db share no network, so web can neither resolve nor reach db:)"
step sh -c "$HYPR exec web -- nslookup db || echo 'db: no such name here, as it should be'"
step sh -c "$HYPR exec web -- ping -c 1 -W 2 10.90.0.10 || echo 'unreachable, as it should be'"
step $HYPR run --rm --network backend busybox sh -c 'echo hello from a VM with its own kernel: $(uname -r)'
step ip netns exec "$NS" ip -br link show type bridge
step ip netns exec "$NS" nft list table inet hypr
step $HYPR stop -t 2 web api db
step $HYPR ps -a
step $HYPR rm web api db
step $HYPR network rm frontend backend

echo "(volumes: data that outlives its VM, and a host directory the VM sees at once:)"
mkdir -p "$WORK/site" && echo "edited on the host" > "$WORK/site/note.txt"
step $HYPR volume create notes
step $HYPR run --rm -v notes:/data busybox sh -c 'echo written by the first VM > /data/log'
step $HYPR run --rm -v notes:/data:ro -v "$WORK/site:/site" busybox cat /data/log /site/note.txt
step $HYPR volume inspect notes
step $HYPR volume rm notes

cat > "$WORK/compose.yaml" <<'YAML'
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hello from compose > /index.html; exec httpd -f -h /"]
    ports: ["8081:80"]
    networks: [frontend]
  api:
    image: busybox
    command: sleep 3600
    networks: [frontend, backend]
    depends_on:
      db: {condition: service_healthy}
  db:
    image: busybox
    command: sleep 3600
    networks: [backend]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
networks:
  frontend:
  backend: {internal: true}
YAML
step cat "$WORK/compose.yaml"
step $HYPR compose -f "$WORK/compose.yaml" -p shop up -d
step $HYPR compose -f "$WORK/compose.yaml" -p shop ps
step $HYPR compose -f "$WORK/compose.yaml" -p shop exec api -- wget -qO- http://web/
step ip netns exec "$NS" curl -s http://127.0.0.1:8081/
step $HYPR compose -f "$WORK/compose.yaml" -p shop down
step $HYPR info
echo
echo "demo finished; namespace $NS and everything in it is removed now"
