#!/usr/bin/env python3
"""Revocation-to-refusal latency at a resource server: for each of N tokens, make the API cache
it (one accepted call), revoke it at Tessera, and time from Tessera's acknowledgement to the
API's first 401, polling the API every POLL_MS. Tokens are revoked CONCURRENCY at a time, each
by its own thread with its own keep-alive connections. Prints one line:

  RESULT n=… p50_ms=… p99_ms=… max_ms=… never=…

where `never` counts tokens still accepted after TIMEOUT_S (they are left out of the quantiles).

  scripts/revocation_latency.py API_URL TESSERA_URL TOKENS_FILE N [CONCURRENCY=1] [POLL_MS=2] [TIMEOUT_S=15]

Traffic goes to 127.0.0.1 only; every loop is bounded by N and TIMEOUT_S.
"""
import base64
import http.client
import statistics
import sys
import threading
import time
import urllib.parse

api_url, tessera_url, tokens_file, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 1
poll = (int(sys.argv[6]) if len(sys.argv) > 6 else 2) / 1000
timeout = float(sys.argv[7]) if len(sys.argv) > 7 else 15.0
for url in (api_url, tessera_url):
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        sys.exit(f"only 127.0.0.1: {url}")
api, tessera = urllib.parse.urlsplit(api_url), urllib.parse.urlsplit(tessera_url)
basic = "Basic " + base64.b64encode(b"demo-client:demo-secret").decode()

with open(tokens_file) as f:
    # The end of the file: the load generator draws from all of it, this takes its own tokens.
    tokens = [line.strip() for line in f if line.strip()][-n:]
if len(tokens) < n:
    sys.exit(f"{tokens_file} holds {len(tokens)} tokens, fewer than {n}")

latencies, never, lock = [], [0], threading.Lock()


class Conn:
    """A keep-alive connection that reconnects once when the server closed it while idle (a
    thread waiting seconds on one server leaves the other's connection idle past its keep-alive)."""

    def __init__(self, url):
        self.url = url
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)

    def status(self, method, path, headers, body=None):
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                r.read()
                return r.status
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=10)


def status(conn, method, path, headers, body=None):
    return conn.status(method, path, headers, body)


def worker(mine):
    a = Conn(api)
    t = Conn(tessera)
    for token in mine:
        bearer = {"Authorization": "Bearer " + token}
        if status(a, "GET", "/api/protected", bearer) != 200:
            with lock:
                never[0] += 1
            continue
        form = urllib.parse.urlencode({"token": token})
        headers = {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}
        if status(t, "POST", "/oauth/revoke", headers, form) != 200:
            sys.exit("revocation failed")
        acked = time.perf_counter()
        while True:
            if status(a, "GET", "/api/protected", bearer) == 401:
                took = time.perf_counter() - acked
                with lock:
                    latencies.append(took)
                break
            if time.perf_counter() - acked > timeout:
                with lock:
                    never[0] += 1
                break
            time.sleep(poll)


threads = [threading.Thread(target=worker, args=(tokens[i::concurrency],)) for i in range(concurrency)]
for th in threads:
    th.start()
for th in threads:
    th.join()
latencies.sort()
if not latencies:
    sys.exit("no token was refused")
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
print(
    f"RESULT n={len(latencies)} p50_ms={statistics.median(latencies) * 1000:.2f} p99_ms={q(0.99):.2f} "
    f"max_ms={latencies[-1] * 1000:.2f} never={never[0]}"
)
