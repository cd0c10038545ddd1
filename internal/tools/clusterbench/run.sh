#!/usr/bin/env bash
# Runs `parley bench` against a local three-node cluster behind HAProxy on
# the machine's PostgreSQL and NATS, the figures of docs/benchmarks.md
# ("Cluster"). Usage, from the repository root:
#
#   go build -o bin/ ./cmd/parley ./cmd/parleyd
#   internal/tools/clusterbench/run.sh direct --conns 200 --duration 20s
#
# Each run gets a fresh schema in the database `test` (dropped at the end),
# three gateway nodes on 127.0.0.1:18081-18083 and HAProxy on :18080 with
# the settings of deploy/haproxy.cfg; the arguments go to `parley bench`,
# which adds --server and --json.
set -euo pipefail
cd "$(dirname "$0")/../../.."
schema="cb_$$"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE SCHEMA $schema" >/dev/null
export PARLEY_STORE="postgres://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=$schema"
export PARLEY_NATS_URL=nats://127.0.0.1:4222
export PARLEY_MASTER_KEY=$(head -c32 /dev/urandom | base64)
export PARLEY_LIMITS=off
for i in 1 2 3; do
  bin/parleyd --listen 127.0.0.1:1808$i --data "$work/n$i" --roles gateway >"$work/n$i.log" 2>&1 &
  pids+=($!)
done
cat >"$work/haproxy.cfg" <<CFG
global
	nbthread 1
	maxconn 9000
defaults
	mode http
	timeout connect 2s
	timeout client 30s
	timeout server 30s
	timeout tunnel 1h
	timeout check 3s
	retries 3
	option redispatch 1
frontend parley
	bind 127.0.0.1:18080
	default_backend parleyd
backend parleyd
	balance leastconn
	option httpchk GET /readyz
	http-check expect status 200
	default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
	server node1 127.0.0.1:18081 check
	server node2 127.0.0.1:18082 check
	server node3 127.0.0.1:18083 check
CFG
haproxy -q -db -f "$work/haproxy.cfg" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:18080/readyz >/dev/null && break
  sleep 0.1
done
sleep 1.5 # every node has passed two checks
unset PARLEY_STORE
bin/parley bench "$@" --server http://127.0.0.1:18080 --json
