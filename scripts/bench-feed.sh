#!/usr/bin/env bash
# The revocation feed's figures of BENCHMARKS.md, in one run on one machine:
#   1. the demo API's warm-cache rate with the feed connected (5-minute TTL), against the same
#      API's /api/public (no token check) and against an API without the feed (5 s TTL), rounds
#      interleaved; and the introspection calls per second each API makes to Tessera meanwhile;
#   2. revocation-to-refusal latency at each API while wrk loads it: N_FEED revocations at the
#      API with the feed, N_TTL at the one without (scripts/revocation_latency.py);
#   3. batch introspection (50 tokens a call) against single calls, in tokens per second.
#
#   [TOKENS=10000] [N_FEED=1000] [N_TTL=200] scripts/bench-feed.sh [SECONDS=10] [ROUNDS=3] [CONNECTIONS=64]
#
# Tessera holds TOKENS live tokens, drawn at random by every wrk run. Needs wrk and python3;
# traffic goes to 127.0.0.1 only, and every run is bounded by its duration or its count.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-10}
ROUNDS=${2:-3}
CONNS=${3:-64}
TOKENS=${TOKENS:-10000}
N_FEED=${N_FEED:-1000}
N_TTL=${N_TTL:-200}
TESSERA_ADDR=127.0.0.1:4930
FEED_ADDR=127.0.0.1:4931
TTL_ADDR=127.0.0.1:4932

command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release -p tessera --bin tessera --example seed_tokens
cargo build --release -p tessera-api --bin api-server

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/tessera.toml" <<TOML
bind = "$TESSERA_ADDR"
data_dir = "$work/data"
shards = 2
workers = 1
audit_log = "off"

[[clients]]
client_id = "demo-client"
client_secret = "demo-secret"
grant_types = ["client_credentials"]
scopes = ["read", "write"]

[[clients]]
client_id = "api-server"
client_secret = "api-secret"
TOML
./target/release/examples/seed_tokens "$work/data" "$TOKENS" "$work/tokens" 2
TESSERA_LOG=warn ./target/release/tessera serve --config "$work/tessera.toml" 2>>"$work/tessera.log" &
pids+=($!)
for _ in $(seq 300); do curl -sf "http://$TESSERA_ADDR/ready" >/dev/null && break; sleep 0.1; done
RUST_LOG=warn ./target/release/api-server --bind "$FEED_ADDR" --tessera-url "http://$TESSERA_ADDR" \
  --workers 1 2>>"$work/api-feed.log" &
pids+=($!)
RUST_LOG=warn ./target/release/api-server --bind "$TTL_ADDR" --tessera-url "http://$TESSERA_ADDR" \
  --workers 1 --no-feed 2>>"$work/api-ttl.log" &
pids+=($!)
for _ in $(seq 300); do
  curl -s "http://$FEED_ADDR/health" | grep -q '"feed":"connected"' && curl -sf "http://$TTL_ADDR/health" >/dev/null && break
  sleep 0.1
done
curl -s "http://$FEED_ADDR/health" | grep -q '"feed":"connected"' || { echo "the API's feed did not connect" >&2; exit 1; }

# The revocation measurements take their tokens from the end of the file; the load draws from
# the rest, so that it meets no revoked token.
revocable=$((N_FEED + N_TTL))
head -n "-$revocable" "$work/tokens" > "$work/load-tokens"
tail -n "$N_TTL" "$work/tokens" > "$work/ttl-tokens"
head -n "-$N_TTL" "$work/tokens" | tail -n "$N_FEED" > "$work/feed-tokens"

mkdir -p bench-results
raw=bench-results/feed-raw.txt
: > "$raw"
upstream() { # API address → introspection calls made so far
  curl -s "http://$1/metrics" | awk '/^api_upstream_introspections_total/ {s += $2} END {print s + 0}'
}
run() { # name address path
  local before after
  before=$(upstream "$2")
  wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s scripts/api.lua "http://$2" -- "$3" "$work/load-tokens" |
    grep '^RESULT' | sed "s/^/$1 /" | tr -d '\n' | tee -a "$raw"
  after=$(upstream "$2")
  echo " upstream=$((after - before))" | tee -a "$raw"
}
# Warm both caches: every token once, unmeasured.
for addr in "$FEED_ADDR" "$TTL_ADDR"; do
  wrk -t2 -c"$CONNS" -d3s -s scripts/api.lua "http://$addr" -- /api/protected "$work/load-tokens" >/dev/null
done
order=(public feed ttl)
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  for name in "${order[@]}"; do
    case $name in
      public) run public "$FEED_ADDR" /api/public ;;
      feed) run feed "$FEED_ADDR" /api/protected ;;
      ttl) run ttl "$TTL_ADDR" /api/protected ;;
    esac
  done
  order=("${order[2]}" "${order[0]}" "${order[1]}")
done

# Revocation to refusal, each API under load from wrk meanwhile (half the connections).
latency() { # name address tokens-file n concurrency poll-ms
  wrk -t1 -c"$((CONNS / 2))" -d120s -s scripts/api.lua "http://$2" -- /api/protected "$work/load-tokens" >/dev/null &
  local load=$!
  sleep 1
  python3 scripts/revocation_latency.py "http://$2" "http://$TESSERA_ADDR" "$3" "$4" "$5" "$6" | sed "s/^/$1 /" | tee -a "$raw"
  kill "$load" 2>/dev/null || true
  wait "$load" 2>/dev/null || true
}
latency revoke-feed "$FEED_ADDR" "$work/feed-tokens" "$N_FEED" 4 2
latency revoke-ttl "$TTL_ADDR" "$work/ttl-tokens" "$N_TTL" 50 20

# Batch introspection against single calls, against Tessera itself.
auth=$(printf 'api-server:api-secret' | base64)
for round in $(seq "$ROUNDS"); do
  wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s scripts/introspect.lua "http://$TESSERA_ADDR" -- "$work/load-tokens" "$auth" |
    grep '^RESULT' | sed "s/^/single /" | tee -a "$raw"
  wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s scripts/introspect_batch.lua "http://$TESSERA_ADDR" -- "$work/load-tokens" "$auth" 50 |
    grep '^RESULT' | sed "s/^/batch50 /" | tee -a "$raw"
done

python3 - "$raw" "$SECONDS_PER_RUN" "$ROUNDS" "$CONNS" "$TOKENS" <<'PY'
import datetime, os, re, statistics, subprocess, sys
raw, secs, rounds, conns, tokens = sys.argv[1:]
runs = {}
for line in open(raw):
    name, rest = line.split(" ", 1)
    runs.setdefault(name, []).append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", rest)})
med = lambda name, key: statistics.median(r[key] for r in runs[name])
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
base = med("public", "rps")
out = [f"Measured {datetime.date.today()} on {cpu or 'unknown CPU'}, {os.cpu_count()} cores, wrk -t2 -c{conns} -d{secs}s on the "
       f"same machine, {rounds} interleaved rounds, medians; {int(tokens):,} live tokens; each API with one worker; "
       "`scripts/bench-feed.sh`.", "",
       "| what | req/s (median) | ratio to `/api/public` | p50 ms | p99 ms | introspections/s to Tessera | non-2xx |",
       "|---|---:|---:|---:|---:|---:|---:|"]
for label, name in [("`/api/public` (no token check)", "public"),
                    ("`/api/protected`, feed connected (5-minute TTL)", "feed"),
                    ("`/api/protected`, no feed (`--no-feed`, 5 s TTL)", "ttl")]:
    rps = med(name, "rps")
    up = statistics.median(r["upstream"] / r["seconds"] for r in runs[name])
    bad = int(sum(r["non2xx"] + r["errors"] for r in runs[name]))
    out.append(f"| {label} | {rps:,.0f} | {rps / base:.2f} | {med(name, 'p50_ms'):.2f} | {med(name, 'p99_ms'):.2f} | {up:,.1f} | {bad} |")
out += ["", "| revocation to refusal at the API, under load | revocations | p50 ms | p99 ms | max ms | never refused |",
        "|---|---:|---:|---:|---:|---:|"]
for label, name in [("feed connected", "revoke-feed"), ("no feed (5 s TTL)", "revoke-ttl")]:
    r = runs[name][0]
    out.append(f"| {label} | {int(r['n']):,} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {int(r['never'])} |")
single, batch = med("single", "rps"), med("batch50", "rps") * 50
out += ["", "| introspection | calls/s | tokens/s | ratio |", "|---|---:|---:|---:|",
        f"| single (`/oauth/introspect`) | {med('single', 'rps'):,.0f} | {single:,.0f} | 1.00 |",
        f"| batch of 50 (`/oauth/introspect/batch`) | {med('batch50', 'rps'):,.0f} | {batch:,.0f} | {batch / single:.2f} |"]
table = "\n".join(out)
print(table)
doc = open("BENCHMARKS.md").read()
start, end = "<!-- feed-bench:start -->", "<!-- feed-bench:end -->"
if start in doc and end in doc:
    doc = doc[: doc.index(start) + len(start)] + "\n" + table + "\n" + doc[doc.index(end):]
    open("BENCHMARKS.md", "w").write(doc)
    print("BENCHMARKS.md updated")
PY
