#!/usr/bin/env python3
"""A burst of concurrent wrong-password sign-ins against Tessera builds, one after the other, for
BENCHMARKS.md: per build, how many attempts reached argon2 (tessera_sign_ins_total{result=
"failure"}), the answers' statuses, the server's peak resident memory (VmRSS sampled every 2 ms)
and the burst's duration.

    scripts/login_burst.py [BURST=50] NAME=BINARY [NAME=BINARY ...]
    scripts/login_burst.py 50 old=/tmp/old/tessera new=target/release/tessera

Each build serves its own empty data directory on 127.0.0.1 with the user alice; every request
goes to 127.0.0.1 and the burst is BURST requests. Standard library only.
"""
import concurrent.futures
import html
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

CONFIG = """bind = "127.0.0.1:{port}"
data_dir = "{data}"
workers = 2
shards = 2
[[clients]]
client_id = "demo-client"
client_secret = "demo-secret-that-is-long-enough-0123456789"
redirect_uris = ["http://127.0.0.1:3001/callback"]
grant_types = ["authorization_code"]
scopes = ["openid"]
[[users]]
username = "alice"
password = "wonderland-42"
"""
AUTHORIZE = (
    "/oauth/authorize?response_type=code&client_id=demo-client"
    "&redirect_uri=http%3A%2F%2F127.0.0.1%3A3001%2Fcallback&scope=openid&state=s"
    "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
)


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    data = res.read().decode("utf-8", "replace")
    conn.close()
    return res, data


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(name, binary, burst):
    work = tempfile.mkdtemp(prefix=f"burst-{name}-")
    port = 4995
    config = os.path.join(work, "tessera.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(port=port, data=os.path.join(work, "data")))
    env = dict(os.environ, TESSERA_LOG="warn", TESSERA_ADDRESS_RATE_PER_SEC="0")
    server = subprocess.Popen([binary, "serve", "--config", config], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if request(port, "GET", "/ready")[0].status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        res, page = request(port, "GET", AUTHORIZE)
        cookie = "; ".join(v.split(";")[0] for k, v in res.getheaders() if k.lower() == "set-cookie")
        hidden = dict(
            (html.unescape(n), html.unescape(v))
            for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', page)
        )

        def attempt(i):
            form = dict(hidden, username="alice", password=f"wrong-guess-{i}")
            body = urllib.parse.urlencode(form)
            headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
            return request(port, "POST", "/oauth/login", body, headers)[0].status

        peak, stop = [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid))
                time.sleep(0.002)

        baseline = rss_kib(server.pid)
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(burst) as pool:
            statuses = list(pool.map(attempt, range(burst)))
        took = time.monotonic() - started
        stop.set()
        sampler.join()
        metrics = request(port, "GET", "/metrics")[1]
        checked = re.search(r'tessera_sign_ins_total\{result="failure"\} (\d+)', metrics)
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        print(
            f"| {name} | {burst} | {checked.group(1) if checked else '?'} | {counts} | "
            f"{baseline / 1024:.0f} MiB | {peak[0] / 1024:.0f} MiB | {took:.2f} s |"
        )
    finally:
        server.kill()
        server.wait()


def main():
    args = sys.argv[1:]
    burst = int(args.pop(0)) if args and args[0].isdigit() else 50
    if not args:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print("| build | attempts | reached argon2 | answers | RSS before | peak RSS | burst took |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for spec in args:
        name, binary = spec.split("=", 1)
        run(name, binary, burst)


if __name__ == "__main__":
    main()
