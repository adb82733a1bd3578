#!/usr/bin/env bash
# Introspection and issuance throughput of Tessera against a bare actix-web endpoint of the same
# shape (examples/ceiling.rs), measured with wrk in the same run, rounds interleaved so that
# drift on a shared machine hits both alike; issuance rounds come after them. Writes the table into BENCHMARKS.md between the
# bench markers, and the raw wrk lines into bench-results/.
#
#   [SHARDS=2] [SHARD_THREADS=default] [WORKERS=2] scripts/bench.sh [TOKENS=100000] [SECONDS=15] [ROUNDS=3] [CONNECTIONS=64]
#
# Needs wrk (Debian: apt-get install wrk). Traffic goes to 127.0.0.1 only; every wrk run is
# bounded by its duration.
set -euo pipefail
cd "$(dirname "$0")/.."

TOKENS=${1:-100000}
SECONDS_PER_RUN=${2:-15}
ROUNDS=${3:-3}
CONNS=${4:-64}
SHARDS=${SHARDS:-2}
SHARD_THREADS=${SHARD_THREADS:-}
WORKERS=${WORKERS:-2}
CEILING_ADDR=127.0.0.1:4900
TESSERA_ADDR=127.0.0.1:4901

command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release --bin tessera --example ceiling --example seed_tokens

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/tessera.toml" <<TOML
bind = "$TESSERA_ADDR"
data_dir = "$work/data"
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

echo "seeding $TOKENS live tokens..."
./target/release/examples/seed_tokens "$work/data" "$TOKENS" "$work/tokens.txt" "$SHARDS"
./target/release/examples/ceiling "$CEILING_ADDR" 2 >/dev/null 2>&1 &
pids+=($!)
TESSERA_LOG=warn ./target/release/tessera serve --config "$work/tessera.toml" 2>"$work/tessera.log" &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "http://$TESSERA_ADDR/ready" >/dev/null && curl -s -o /dev/null "http://$CEILING_ADDR/" && break
  sleep 0.1
done

api_auth=$(printf 'api-server:api-secret' | base64)
demo_auth=$(printf 'demo-client:demo-secret' | base64)
mkdir -p bench-results
raw=bench-results/raw.txt
: > "$raw"
run() { # name url script args...
  local name=$1 url=$2 script=$3; shift 3
  wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s "$script" "$url" -- "$@" | grep '^RESULT' | sed "s/^/$name /" | tee -a "$raw"
}
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  if (( round % 2 )); then
    run ceiling "http://$CEILING_ADDR" scripts/introspect.lua "$work/tokens.txt" "$api_auth"
    run introspect "http://$TESSERA_ADDR" scripts/introspect.lua "$work/tokens.txt" "$api_auth"
  else
    run introspect "http://$TESSERA_ADDR" scripts/introspect.lua "$work/tokens.txt" "$api_auth"
    run ceiling "http://$CEILING_ADDR" scripts/introspect.lua "$work/tokens.txt" "$api_auth"
  fi
done
# Issuance last: every issued token stays live, so issuing between introspection rounds would
# grow the store past the stated pool and leave the flusher's work behind for the next round.
for round in $(seq "$ROUNDS"); do
  echo "issuance round $round/$ROUNDS"
  run issue "http://$TESSERA_ADDR" scripts/issue.lua "$demo_auth"
done

python3 - "$raw" "$TOKENS" "$SECONDS_PER_RUN" "$ROUNDS" "$CONNS" "$SHARDS" "$WORKERS" "$SHARD_THREADS" <<'PY'
import os, re, statistics, sys, subprocess, datetime
raw, tokens, secs, rounds, conns, shards, workers, threads = sys.argv[1:]
# The server's own default when the script does not set it (src/config.rs).
threads = threads or str(max(1, min(os.cpu_count() // 2, int(shards))))
runs = {}
for line in open(raw):
    name, rest = line.split(" ", 1)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    runs.setdefault(name, []).append({k: float(v) for k, v in kv.items()})
med = lambda name, key: statistics.median(r[key] for r in runs[name])
ceiling = med("ceiling", "rps")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
rows = [
    ("bare actix-web ceiling (`examples/ceiling.rs`)", "ceiling"),
    (f"Tessera introspection, {int(tokens):,} live tokens, {shards} shard(s) on {threads} thread(s), {workers} workers", "introspect"),
    ("Tessera client_credentials issuance (durable)", "issue"),
]
out = [f"Measured {datetime.date.today()} on {cpu or 'unknown CPU'}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
       f"wrk -t2 -c{conns} -d{secs}s on the same machine, {rounds} interleaved rounds; medians of the rounds.", "",
       "| what | req/s (median) | ratio to ceiling | p50 ms | p99 ms | non-2xx | rounds' req/s |",
       "|---|---:|---:|---:|---:|---:|---|"]
for label, name in rows:
    rps = med(name, "rps")
    every = ", ".join(f"{r['rps']:,.0f}" for r in runs[name])
    non2xx = int(sum(r["non2xx"] + r["errors"] for r in runs[name]))
    out.append(f"| {label} | {rps:,.0f} | {rps / ceiling:.2f} | {med(name, 'p50_ms'):.2f} | {med(name, 'p99_ms'):.2f} | {non2xx} | {every} |")
table = "\n".join(out)
print(table)
doc = open("BENCHMARKS.md").read()
default = (shards, workers) == ("2", "2") and not sys.argv[8]
marker = "bench" if default else f"bench-shards{shards}-threads{threads}-workers{workers}"
if tokens != "100000":
    marker += f"-tokens{tokens}"
start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
if start in doc and end in doc:
    doc = doc[: doc.index(start) + len(start)] + "\n" + table + "\n" + doc[doc.index(end):]
    open("BENCHMARKS.md", "w").write(doc)
    print("BENCHMARKS.md updated")
PY
