#!/usr/bin/env bash
# The load-campaign figures of BENCHMARKS.md, all from one run on one machine:
#   - introspection against a bare actix-web endpoint of the same shape (examples/ceiling.rs),
#     with 100,000 and with 1,000,000 live tokens, rounds interleaved so that drift on a shared
#     machine hits all three alike;
#   - durable client_credentials issuance, after the introspection rounds;
#   - resident memory of the server holding 1,000,000 live tokens;
#   - restarts of that server until /ready answers and a pool token introspects active.
# Writes the table between the bench markers of BENCHMARKS.md and the raw lines into
# bench-results/.
#
#   [SHARDS=2] [SHARD_THREADS=default] [WORKERS=2] scripts/bench.sh [SECONDS=15] [ROUNDS=3] [CONNECTIONS=64]
#
# Needs wrk (Debian: apt-get install wrk). Traffic goes to 127.0.0.1 only; every wrk run is
# bounded by its duration, every wait by a count.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-15}
ROUNDS=${2:-3}
CONNS=${3:-64}
SHARDS=${SHARDS:-2}
SHARD_THREADS=${SHARD_THREADS:-}
WORKERS=${WORKERS:-2}
SMALL=100000
LARGE=1000000
CEILING_ADDR=127.0.0.1:4900
SMALL_ADDR=127.0.0.1:4901
LARGE_ADDR=127.0.0.1:4902

command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release --bin tessera --example ceiling --example seed_tokens

work=$(mktemp -d)
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

config() { # name addr
  cat > "$work/$1.toml" <<TOML
bind = "$2"
data_dir = "$work/$1"
shards = $SHARDS
${SHARD_THREADS:+shard_threads = $SHARD_THREADS}
workers = $WORKERS

[[clients]]
client_id = "demo-client"
client_secret = "demo-secret"
grant_types = ["client_credentials"]
scopes = ["read", "write"]

[[clients]]
client_id = "api-server"
client_secret = "api-secret"
TOML
}
start() { # name addr
  TESSERA_LOG=warn ./target/release/tessera serve --config "$work/$1.toml" 2>>"$work/$1.log" &
  pid[$1]=$!
}
api_auth=$(printf 'api-server:api-secret' | base64)
demo_auth=$(printf 'demo-client:demo-secret' | base64)
# Seconds (3 decimals) until /ready answers and the first pool token introspects active.
wait_serving() { # name addr started_ns
  local token
  token=$(head -1 "$work/$1.tokens")
  for _ in $(seq 3000); do
    if curl -sf "http://$2/ready" >/dev/null &&
      curl -sf -H "Authorization: Basic $api_auth" -d "token=$token" "http://$2/oauth/introspect" | grep -q '"active":true'; then
      echo "scale=3; ($(date +%s%N) - $3) / 1000000000" | bc
      return
    fi
    sleep 0.01
  done
  echo "$1 did not serve within 30 s" >&2
  exit 1
}

for name in small large; do
  count=$SMALL; [[ $name == large ]] && count=$LARGE
  echo "seeding $count live tokens for $name..."
  ./target/release/examples/seed_tokens "$work/$name" "$count" "$work/$name.tokens" "$SHARDS"
done
# wrk's own cost per request depends on how many requests its Lua table holds (a table of
# 1,000,000 ran about 10% faster than one of 100,000 against the same server), so every
# introspection run draws from 1,000,000 lines: the small pool is repeated ten times.
for _ in $(seq $((LARGE / SMALL))); do cat "$work/small.tokens"; done > "$work/small.requests"
config small "$SMALL_ADDR"
config large "$LARGE_ADDR"
./target/release/examples/ceiling "$CEILING_ADDR" "$WORKERS" >/dev/null 2>&1 &
pid[ceiling]=$!
start small "$SMALL_ADDR"
start large "$LARGE_ADDR"
wait_serving small "$SMALL_ADDR" "$(date +%s%N)" >/dev/null
wait_serving large "$LARGE_ADDR" "$(date +%s%N)" >/dev/null
for _ in $(seq 100); do curl -s -o /dev/null "http://$CEILING_ADDR/" && break; sleep 0.1; done

mkdir -p bench-results
raw=bench-results/raw.txt
: > "$raw"
run() { # name url script args...
  local name=$1 url=$2 script=$3; shift 3
  wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s "$script" "$url" -- "$@" | grep '^RESULT' | sed "s/^/$name /" | tee -a "$raw"
}
introspect() { # name
  case $1 in
    ceiling) run ceiling "http://$CEILING_ADDR" scripts/introspect.lua "$work/small.requests" "$api_auth" ;;
    small) run small "http://$SMALL_ADDR" scripts/introspect.lua "$work/small.requests" "$api_auth" ;;
    large) run large "http://$LARGE_ADDR" scripts/introspect.lua "$work/large.tokens" "$api_auth" ;;
  esac
}
order=(ceiling small large)
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  for name in "${order[@]}"; do introspect "$name"; done
  order=("${order[1]}" "${order[2]}" "${order[0]}")
done
echo "large rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/${pid[large]}/status")" | tee -a "$raw"

# Issuance last: every issued token stays live, so issuing between introspection rounds would
# grow the store past the stated pool.
for round in $(seq "$ROUNDS"); do
  echo "issuance round $round/$ROUNDS"
  run issue "http://$SMALL_ADDR" scripts/issue.lua "$demo_auth"
done

for round in $(seq "$ROUNDS"); do
  kill -TERM "${pid[large]}"
  wait "${pid[large]}" || true
  started=$(date +%s%N)
  start large "$LARGE_ADDR"
  echo "large restart_s=$(wait_serving large "$LARGE_ADDR" "$started")" | tee -a "$raw"
done

python3 - "$raw" "$SECONDS_PER_RUN" "$ROUNDS" "$CONNS" "$SHARDS" "$WORKERS" "$SHARD_THREADS" <<'PY'
import os, re, statistics, sys, subprocess, datetime
raw, secs, rounds, conns, shards, workers, threads = sys.argv[1:]
explicit_threads = bool(threads)
# The server's own default when the script does not set it (src/config.rs).
threads = threads or str(max(1, min(os.cpu_count() // 2, int(shards))))
runs = {}
for line in open(raw):
    name, rest = line.split(" ", 1)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    runs.setdefault(name, []).append({k: float(v) for k, v in kv.items()})
def med(name, key):
    return statistics.median(r[key] for r in runs[name] if key in r)
ceiling = med("ceiling", "rps")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
layout = f"{shards} shard(s) on {threads} thread(s), {workers} workers"
rows = [
    ("bare actix-web ceiling (`examples/ceiling.rs`)", "ceiling"),
    (f"Tessera introspection, 100,000 live tokens, {layout}", "small"),
    (f"Tessera introspection, 1,000,000 live tokens, {layout}", "large"),
    ("Tessera client_credentials issuance (durable), from 100,000 live tokens", "issue"),
]
out = [f"Measured {datetime.date.today()} on {cpu or 'unknown CPU'}, {os.cpu_count()} cores, "
       f"wrk -t2 -c{conns} -d{secs}s on the same machine, {rounds} interleaved rounds; medians of the rounds.", "",
       "| what | req/s (median) | ratio to ceiling | p50 ms | p99 ms | non-2xx | rounds' req/s |",
       "|---|---:|---:|---:|---:|---:|---|"]
for label, name in rows:
    rps = med(name, "rps")
    every = ", ".join(f"{r['rps']:,.0f}" for r in runs[name] if "rps" in r)
    non2xx = int(sum(r["non2xx"] + r["errors"] for r in runs[name] if "rps" in r))
    out.append(f"| {label} | {rps:,.0f} | {rps / ceiling:.2f} | {med(name, 'p50_ms'):.2f} | {med(name, 'p99_ms'):.2f} | {non2xx} | {every} |")
small, large = med("small", "rps"), med("large", "rps")
rss = [r["rss_kib"] for r in runs["large"] if "rss_kib" in r][0] / 1024
restarts = [r["restart_s"] for r in runs["large"] if "restart_s" in r]
p99s = lambda name: ", ".join(f"{r['p99_ms']:.2f}" for r in runs[name] if "p99_ms" in r)
out += ["",
        f"- 1,000,000 against 100,000 live tokens: {large / small:.2f} of the rate "
        + (f"({(1 - large / small) * 100:.0f}% slower)." if large < small else "(not slower)."),
        f"- Introspection p99 by round: 100,000 tokens {p99s('small')} ms; 1,000,000 tokens {p99s('large')} ms.",
        f"- Resident memory of the server holding 1,000,000 live tokens, after its introspection rounds: {rss:,.0f} MiB.",
        f"- Restart with 1,000,000 live tokens, from exec to `/ready` and a pool token introspected active: "
        f"{statistics.median(restarts):.2f} s median ({', '.join(f'{r:.2f}' for r in restarts)} s)."]
table = "\n".join(out)
print(table)
doc = open("BENCHMARKS.md").read()
default = (shards, workers) == ("2", "2") and not explicit_threads
marker = "bench" if default else f"bench-shards{shards}-threads{threads}-workers{workers}"
start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
if start in doc and end in doc:
    doc = doc[: doc.index(start) + len(start)] + "\n" + table + "\n" + doc[doc.index(end):]
    open("BENCHMARKS.md", "w").write(doc)
    print("BENCHMARKS.md updated")
PY
