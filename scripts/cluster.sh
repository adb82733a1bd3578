#!/usr/bin/env bash
# Three Tessera nodes on one throwaway PostgreSQL, on loopback, for campaigns:
#
#   scripts/cluster.sh [SECONDS=20] [TOKENS=300] [CONCURRENCY=2]
#
# Starts PostgreSQL (scripts/postgres.sh) and nodes on 127.0.0.1:4101-4103 with one server
# key. First, for SECONDS, introspection alone on every node, counting the database's
# transactions meanwhile (a warm node asks the database nothing). Then, for SECONDS, it loads
# every node at once with wrk (client_credentials issuance on
# each, which writes to the database, and introspection of one node's tokens on each) while
# scripts/cross_node_revocation.py issues TOKENS tokens round the nodes, revokes each on its
# issuer and times until the two others refuse it. Prints the wrk lines and the latency line,
# and keeps them in bench-results/cluster-<time>.txt. Everything stops at the end; nothing
# listens beyond loopback.
#
# Needs wrk and python3. Every wrk run is bounded by SECONDS, the latency run by TOKENS.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-20}
TOKENS=${2:-300}
CONCURRENCY=${3:-2}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release --bin tessera

work=$(mktemp -d /tmp/tessera-cluster.XXXXXX)
chmod 755 "$work" # the postgres user reaches its directory inside
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/postgres.sh stop "$work/pg" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

url=$(scripts/postgres.sh start "$work/pg" 5546)
key=$(head -c 32 /dev/urandom | base64)
nodes=()
for k in 1 2 3; do
  port=$((4100 + k))
  cat > "$work/node$k.toml" <<EOF
bind = "127.0.0.1:$port"
data_dir = "$work/node$k"
store = "postgres"
database_url = "$url"
shards = 2
workers = 1
[[clients]]
client_id = "api-server"
client_secret = "api-secret"
[[clients]]
client_id = "demo-client"
client_secret = "demo-secret"
grant_types = ["client_credentials"]
scopes = ["read", "write"]
EOF
  TESSERA_SERVER_KEY=$key TESSERA_LOG=${TESSERA_LOG:-warn} target/release/tessera serve \
    --config "$work/node$k.toml" 2>"$work/node$k.log" &
  pids+=($!)
  nodes+=("http://127.0.0.1:$port")
  # One after another: each node migrates the schema only if no other is doing it.
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { cat "$work/node$k.log" >&2; exit 1; }
done

# A pool of tokens issued on node 1, introspected on every node (read through once, then held).
demo=$(printf 'demo-client:demo-secret' | base64)
api=$(printf 'api-server:api-secret' | base64)
python3 - "${nodes[0]#http://}" "$demo" > "$work/pool.tokens" <<'PY'
import http.client, json, sys
conn = http.client.HTTPConnection(sys.argv[1], timeout=10)
headers = {"Authorization": "Basic " + sys.argv[2], "Content-Type": "application/x-www-form-urlencoded"}
for _ in range(2000):
    conn.request("POST", "/oauth/token", body="grant_type=client_credentials&scope=read", headers=headers)
    print(json.loads(conn.getresponse().read())["access_token"])
PY

out=bench-results/cluster-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench-results
# The database's transactions (queries and commits alike), from its own statistics.
xacts() {
  psql "$url" -Atc "SELECT pg_stat_force_next_flush(); SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()" | tail -1
}
introspect_all() { # SECONDS LABEL
  for k in 0 1 2; do
    (wrk -t1 -c16 -d"$1s" -s scripts/introspect.lua "${nodes[$k]}" -- "$work/pool.tokens" "$api" \
      | sed -n "s/^RESULT/$2 node$((k + 1)) RESULT/p") &
  done
  wait
}
{
  echo "# scripts/cluster.sh $SECONDS_PER_RUN $TOKENS $CONCURRENCY: 3 nodes, $(nproc) cores"
  # Warm nodes answer from memory: every node reads the pool through once, then the
  # database's transactions are counted over a run of introspection alone (the followers'
  # polls, every 20 ms on each node, are what remains).
  introspect_all 3 warm-up >/dev/null
  sleep 1
  before=$(xacts)
  introspect_all "$SECONDS_PER_RUN" introspect | tee "$work/warm.txt"
  sleep 1
  after=$(xacts)
  requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' "$work/warm.txt" | awk '{n += $1} END {print n}')
  awk -v t=$((after - before)) -v r="$requests" 'BEGIN {
    printf "database transactions during warm introspection: %d for %d requests (%.5f per request)\n", t, r, t / r }'
  echo "# then issuance and introspection on every node, with cross-node revocations:"
  for k in 0 1 2; do
    (wrk -t1 -c16 -d"${SECONDS_PER_RUN}s" -s scripts/issue.lua "${nodes[$k]}" -- "$demo" \
      | sed -n "s/^RESULT/issue node$((k + 1)) RESULT/p") &
    (wrk -t1 -c16 -d"${SECONDS_PER_RUN}s" -s scripts/introspect.lua "${nodes[$k]}" -- "$work/pool.tokens" "$api" \
      | sed -n "s/^RESULT/introspect node$((k + 1)) RESULT/p") &
  done
  sleep 2
  echo "cross-node revocation under that load: $(python3 scripts/cross_node_revocation.py \
    "$(IFS=,; echo "${nodes[*]}")" "$TOKENS" "$CONCURRENCY" 2 15)"
  wait
} | tee "$out"
echo "kept in $out"
