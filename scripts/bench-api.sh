#!/usr/bin/env bash
# The resource-server figure of BENCHMARKS.md: the demo API's protected endpoint with a warm
# introspection cache, against the same API's unauthenticated endpoint of the same shape
# (/api/public), in one run, rounds interleaved.
#
#   [TOKENS=1000] [API_WORKERS=2] scripts/bench-api.sh [SECONDS=15] [ROUNDS=3] [CONNECTIONS=64]
#
# Tessera holds TOKENS live tokens; wrk sends each request with one of them drawn at random, to
# both endpoints. The API runs with its default cache TTL (5 s), so each token is introspected
# again every 5 s: "warm" here is the steady state, not a cache that never expires. The API's
# own cache counters after the run give the hit rate. Needs wrk; traffic goes to 127.0.0.1 only
# and every run is bounded by its duration.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-15}
ROUNDS=${2:-3}
CONNS=${3:-64}
TOKENS=${TOKENS:-1000}
API_WORKERS=${API_WORKERS:-2}
TESSERA_ADDR=127.0.0.1:4910
API_ADDR=127.0.0.1:4911

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
RUST_LOG=warn ./target/release/api-server --bind "$API_ADDR" --tessera-url "http://$TESSERA_ADDR" \
  --workers "$API_WORKERS" 2>>"$work/api.log" &
pids+=($!)
for _ in $(seq 300); do
  curl -sf "http://$TESSERA_ADDR/ready" >/dev/null && curl -sf "http://$API_ADDR/health" >/dev/null && break
  sleep 0.1
done
token=$(head -1 "$work/tokens")
curl -sf -H "Authorization: Bearer $token" "http://$API_ADDR/api/protected" | grep -q '"client_id":"demo-client"' ||
  { echo "the API does not accept a pool token" >&2; exit 1; }

mkdir -p bench-results
raw=bench-results/api-raw.txt
: > "$raw"
run() { # name path
  wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s scripts/api.lua "http://$API_ADDR" -- "$2" "$work/tokens" |
    grep '^RESULT' | sed "s/^/$1 /" | tee -a "$raw"
}
# Warm the cache: every token once, unmeasured.
wrk -t2 -c"$CONNS" -d3s -s scripts/api.lua "http://$API_ADDR" -- /api/protected "$work/tokens" >/dev/null
order=(public protected)
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  for name in "${order[@]}"; do run "$name" "/api/$name"; done
  order=("${order[1]}" "${order[0]}")
done
curl -s "http://$API_ADDR/metrics" | grep '^api_introspection_cache_total' | sed 's/^/metrics /' | tee -a "$raw"

python3 - "$raw" "$SECONDS_PER_RUN" "$ROUNDS" "$CONNS" "$TOKENS" "$API_WORKERS" <<'PY'
import os, re, statistics, sys, subprocess, datetime
raw, secs, rounds, conns, tokens, workers = sys.argv[1:]
runs, lookups = {}, {}
for line in open(raw):
    name, rest = line.split(" ", 1)
    if name == "metrics":
        m = re.search(r'result="(\w+)"\}\s+([\d.e+]+)', rest)
        if m:
            lookups[m.group(1)] = float(m.group(2))
        continue
    kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    runs.setdefault(name, []).append({k: float(v) for k, v in kv.items()})
med = lambda name, key: statistics.median(r[key] for r in runs[name])
base = med("public", "rps")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
out = [f"Measured {datetime.date.today()} on {cpu or 'unknown CPU'}, {os.cpu_count()} cores, wrk -t2 -c{conns} -d{secs}s on the "
       f"same machine, {rounds} interleaved rounds, medians; the API with {workers} workers and its default 5 s cache TTL, "
       f"{int(tokens):,} live tokens drawn at random.", "",
       "| what | req/s (median) | ratio to `/api/public` | p50 ms | p99 ms | non-2xx | rounds' req/s |",
       "|---|---:|---:|---:|---:|---:|---|"]
for label, name in [("`GET /api/public` (no token check)", "public"), ("`GET /api/protected` (warm cache)", "protected")]:
    rps = med(name, "rps")
    every = ", ".join(f"{r['rps']:,.0f}" for r in runs[name])
    bad = int(sum(r["non2xx"] + r["errors"] for r in runs[name]))
    out.append(f"| {label} | {rps:,.0f} | {rps / base:.2f} | {med(name, 'p50_ms'):.2f} | {med(name, 'p99_ms'):.2f} | {bad} | {every} |")
total = sum(lookups.values())
if total:
    hits = lookups.get("hit", 0)
    out += ["", f"- Cache lookups over the whole run (warm-up included): {total:,.0f}, of which hits {hits / total:.4%}, "
            f"misses {lookups.get('miss', 0):,.0f}, coalesced {lookups.get('coalesced', 0):,.0f}."]
table = "\n".join(out)
print(table)
doc = open("BENCHMARKS.md").read()
start, end = "<!-- api-bench:start -->", "<!-- api-bench:end -->"
if start in doc and end in doc:
    doc = doc[: doc.index(start) + len(start)] + "\n" + table + "\n" + doc[doc.index(end):]
    open("BENCHMARKS.md", "w").write(doc)
    print("BENCHMARKS.md updated")
PY
