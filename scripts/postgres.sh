#!/usr/bin/env bash
# A throwaway PostgreSQL for benchmarks and campaigns, on loopback only:
#
#   scripts/postgres.sh start DIR [PORT=5544]   # initdb in DIR, start, create database "tessera"
#   scripts/postgres.sh stop DIR
#
# start prints the database URL. As root, the server runs as the postgres user (PostgreSQL
# refuses to run as root). Uses Debian's postgresql binaries (/usr/lib/postgresql/*/bin) or
# those on PATH. The tests start their own (src/store/pg/testing.rs).
set -euo pipefail
cmd=${1:?start or stop}; dir=${2:?a directory}; port=${3:-5544}
bin=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")")
as_pg=(); [[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)
case $cmd in
  start)
    mkdir -p "$dir"; [[ $(id -u) == 0 ]] && chown postgres:postgres "$dir"
    "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U tessera --auth=trust -E UTF8 >/dev/null
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir" start >/dev/null
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U tessera tessera
    echo "postgres://tessera@127.0.0.1:$port/tessera"
    ;;
  stop) "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
  *) echo "start or stop" >&2; exit 2 ;;
esac
