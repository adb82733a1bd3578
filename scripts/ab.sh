#!/usr/bin/env bash
# Same-pool A/B of Tessera builds or settings: every variant serves its own copy of one seeded
# pool of live tokens, and wrk runs against each in turn, the order reversed every other round,
# so drift on a shared machine hits all variants alike. Prints, per variant, the median req/s,
# p50 and p99 over the rounds, and the server's CPU time per request (from /proc), which is
# steadier than req/s on a noisy machine.
#
#   [TOKENS=100000] [WORKLOAD=introspect|issue] [CONNS=64] [TESSERA_LOG=warn] \
#     scripts/ab.sh [SECONDS=10] [ROUNDS=6] NAME=BINARY[:key=value,...] NAME=BINARY[:...] ...
#   scripts/ab.sh 10 6 one=target/release/tessera:shard_threads=1 two=target/release/tessera:shard_threads=2
#   WORKLOAD=issue scripts/ab.sh 10 4 on=target/release/tessera off=target/release/tessera:commit_delay_us=0
#   TOKENS=0 WORKLOAD=issue scripts/ab.sh 10 4 old=/tmp/old/tessera new=target/release/tessera
#
# key=value pairs go into the variant's TOML (shards, shard_threads, workers, ...); the default
# is 2 shards and 2 workers. A variant with store="postgres",database_url="…" (a database of
# its own, e.g. from scripts/postgres.sh) gets the seeded pool copied into it with
# `tessera store copy` first, so it introspects the same tokens:
#   TOKENS=100000 scripts/ab.sh 10 4 sled=target/release/tessera \
#     'pg=target/release/tessera:store="postgres",database_url="postgres://tessera@127.0.0.1:5544/tessera"' One key is the variant's own: api_rate_limit_per_sec=N sets the
# rate_limit_per_sec of the introspecting api-server client, to measure the limiter's cost:
#   scripts/ab.sh 10 6 none=target/release/tessera \
#     limited=target/release/tessera:api_rate_limit_per_sec=10000000
# TESSERA_LOG is the servers' log filter: warn by default, info for a server's own default
# (its request spans are then on).
# The pool is seeded with this tree's examples/seed_tokens, so every binary must read this
# tree's store layout. With WORKLOAD=issue, every round issues client_credentials tokens and
# each variant's store grows alike; TOKENS=0 starts every variant on an empty store of its own, so builds with different store layouts can be compared. Needs
# wrk. Traffic goes to 127.0.0.1 only; every wrk run is bounded by its duration.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-10}
ROUNDS=${2:-6}
shift 2 || true
(($#)) || { sed -n '2,28p' "$0" >&2; exit 2; }
TOKENS=${TOKENS:-100000}
WORKLOAD=${WORKLOAD:-introspect}
CONNS=${CONNS:-64}
case $WORKLOAD in introspect|issue) ;; *) echo "WORKLOAD is introspect or issue" >&2; exit 2 ;; esac
if ((TOKENS == 0)) && [[ $WORKLOAD != issue ]]; then
  echo "TOKENS=0 (empty stores) only goes with WORKLOAD=issue" >&2; exit 2
fi
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release --example seed_tokens

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

names=() ; declare -A url pid tokens
port=4920
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; bin=${rest%%:*}; opts=""
  [[ $rest == *:* ]] && opts=${rest#*:}
  shards=$(tr ',' '\n' <<<"$opts" | sed -n 's/^shards=//p'); shards=${shards:-2}
  api_rate=$(tr ',' '\n' <<<"$opts" | sed -n 's/^api_rate_limit_per_sec=//p')
  pool=$work/pool-$shards
  if ((TOKENS == 0)); then
    # Empty stores: each binary creates its own, in its own layout.
    mkdir -p "$work/$name"
  else
    if [[ ! -d $pool ]]; then
      ./target/release/examples/seed_tokens "$pool" "$TOKENS" "$pool.tokens" "$shards"
    fi
    cp -r "$pool" "$work/$name"
    # A variant on PostgreSQL serves the same pool: it is copied into its database first.
    db=$(tr ',' '\n' <<<"$opts" | sed -n 's/^database_url=//p' | tr -d '"')
    if [[ -n $db ]]; then
      printf 'data_dir = "%s"\nshards = %s\n' "$work/$name" "$shards" > "$work/$name.copy.toml"
      "$bin" --config "$work/$name.copy.toml" store copy --from "$work/$name" --to "$db" >&2
    fi
  fi
  {
    echo "bind = \"127.0.0.1:$port\""
    echo "data_dir = \"$work/$name\""
    grep -q '^shards=' <<<"${opts//,/$'\n'}" || echo "shards = 2"
    grep -q '^workers=' <<<"${opts//,/$'\n'}" || echo "workers = 2"
    tr ',' '\n' <<<"$opts" | { grep -v '^api_rate_limit_per_sec=' || true; } | sed -n 's/^\([a-z_]*\)=\(.*\)$/\1 = \2/p'
    printf '[[clients]]\nclient_id = "api-server"\nclient_secret = "api-secret"\n'
    [[ -z $api_rate ]] || echo "rate_limit_per_sec = $api_rate"
    printf '[[clients]]\nclient_id = "demo-client"\nclient_secret = "demo-secret"\n'
    printf 'grant_types = ["client_credentials"]\nscopes = ["read", "write"]\n'
  } > "$work/$name.toml"
  TESSERA_LOG=${TESSERA_LOG:-warn} "$bin" serve --config "$work/$name.toml" 2>"$work/$name.log" &
  pids+=($!); pid[$name]=$!; url[$name]=http://127.0.0.1:$port; tokens[$name]=$pool.tokens; names+=("$name")
  port=$((port + 1))
done
for name in "${names[@]}"; do
  for _ in $(seq 300); do curl -sf "${url[$name]}/ready" >/dev/null && break; sleep 0.1; done
done

api_auth=$(printf 'api-server:api-secret' | base64)
demo_auth=$(printf 'demo-client:demo-secret' | base64)
if ((TOKENS > 0)); then
  # Every variant must hold the pool: a token it does not know is answered inactive, cheaply.
  for name in "${names[@]}"; do
    sample=$(head -1 "${tokens[$name]}")
    curl -sf -H "Authorization: Basic $api_auth" -d "token=$sample" "${url[$name]}/oauth/introspect" \
      | grep -q '"active":true' || { echo "$name does not hold the pool: a pool token is inactive" >&2; exit 1; }
  done
fi
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
results=$work/results.txt
for round in $(seq "$ROUNDS"); do
  order=("${names[@]}")
  ((round % 2)) || mapfile -t order < <(printf '%s\n' "${names[@]}" | tac)
  for name in "${order[@]}"; do
    before=$(cpu "${pid[$name]}")
    if [[ $WORKLOAD == issue ]]; then
      line=$(wrk -t"$(( CONNS < 2 ? 1 : 2 ))" -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s scripts/issue.lua "${url[$name]}" -- "$demo_auth" | grep '^RESULT')
    else
      line=$(wrk -t"$(( CONNS < 2 ? 1 : 2 ))" -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s scripts/introspect.lua "${url[$name]}" -- "${tokens[$name]}" "$api_auth" | grep '^RESULT')
    fi
    after=$(cpu "${pid[$name]}")
    echo "$name $line cpu_ticks=$((after - before)) hz=$(getconf CLK_TCK)" | tee -a "$results"
  done
done

python3 - "$results" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rest = line.split(" ", 1)
    kv = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", rest)}
    kv["cpu_us"] = kv["cpu_ticks"] / kv["hz"] * 1e6 / kv["requests"]
    runs.setdefault(name, []).append(kv)
print("\n| variant | req/s (median) | p50 ms | p99 ms | server CPU µs/request | rounds' p99 ms |")
print("|---|---:|---:|---:|---:|---|")
for name, rs in runs.items():
    med = lambda k: statistics.median(r[k] for r in rs)
    p99s = ", ".join(f"{r['p99_ms']:.2f}" for r in rs)
    print(f"| {name} | {med('rps'):,.0f} | {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | {med('cpu_us'):.1f} | {p99s} |")
PY
