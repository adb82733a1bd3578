#!/usr/bin/env python3
"""Cross-node revocation latency: for each of N tokens, issue it on one node, have every other
node introspect it active (so they hold it in memory), revoke it on the issuing node, and time
from that acknowledgement to the moment every other node introspects it inactive, polling them
every POLL_MS. The issuing node goes round the list. Tokens are handled CONCURRENCY at a time,
each thread with its own keep-alive connections. Prints one line:

  RESULT n=… p50_ms=… p99_ms=… max_ms=… never=…

where `never` counts tokens still active somewhere after TIMEOUT_S (left out of the quantiles).

  scripts/cross_node_revocation.py NODE_URL,NODE_URL[,…] N [CONCURRENCY=1] [POLL_MS=2] [TIMEOUT_S=15]

Traffic goes to 127.0.0.1 only; every loop is bounded by N and TIMEOUT_S.
"""
import base64
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

nodes = [urllib.parse.urlsplit(u) for u in sys.argv[1].split(",")]
n = int(sys.argv[2])
concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 1
poll = (int(sys.argv[4]) if len(sys.argv) > 4 else 2) / 1000
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 15.0
if len(nodes) < 2:
    sys.exit("at least two nodes")
for url in nodes:
    if url.hostname not in ("127.0.0.1", "localhost"):
        sys.exit(f"only 127.0.0.1: {url.geturl()}")


def basic(client, secret):
    return "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()


DEMO, API = basic("demo-client", "demo-secret"), basic("api-server", "api-secret")
FORM = "application/x-www-form-urlencoded"
latencies, never, lock = [], [0], threading.Lock()


class Conn:
    """A keep-alive connection that reconnects once when the server closed it while idle."""

    def __init__(self, url):
        self.url = url
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)

    def post(self, path, auth, form):
        body = urllib.parse.urlencode(form)
        for attempt in (0, 1):
            try:
                self.conn.request("POST", path, body=body, headers={"Authorization": auth, "Content-Type": FORM})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=10)

    def active(self, token):
        status, body = self.post("/oauth/introspect", API, {"token": token})
        if status != 200:
            sys.exit(f"introspection at {self.url.geturl()} answered {status}: {body[:200]!r}")
        return json.loads(body)["active"]


def worker(first, count):
    conns = [Conn(u) for u in nodes]
    for i in range(first, first + count):
        issuer, others = conns[i % len(conns)], [c for k, c in enumerate(conns) if k != i % len(conns)]
        status, body = issuer.post("/oauth/token", DEMO, {"grant_type": "client_credentials", "scope": "read"})
        if status != 200:
            sys.exit(f"issuance answered {status}: {body[:200]!r}")
        token = json.loads(body)["access_token"]
        if not all(c.active(token) for c in others):
            sys.exit("a token issued on one node is not active on another")
        status, _ = issuer.post("/oauth/revoke", DEMO, {"token": token})
        if status != 200:
            sys.exit(f"revocation answered {status}")
        acked = time.perf_counter()
        pending = list(others)
        while pending:
            pending = [c for c in pending if c.active(token)]
            if not pending:
                with lock:
                    latencies.append(time.perf_counter() - acked)
                break
            if time.perf_counter() - acked > timeout:
                with lock:
                    never[0] += 1
                break
            time.sleep(poll)


share = [n // concurrency + (1 if k < n % concurrency else 0) for k in range(concurrency)]
starts = [sum(share[:k]) for k in range(concurrency)]
threads = [threading.Thread(target=worker, args=(starts[k], share[k])) for k in range(concurrency)]
for th in threads:
    th.start()
for th in threads:
    th.join()
latencies.sort()
if not latencies:
    sys.exit(f"no revocation was seen on every node (never={never[0]})")
ms = [x * 1000 for x in latencies]
p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
print(f"RESULT n={len(ms)} p50_ms={statistics.median(ms):.1f} p99_ms={p99:.1f} max_ms={ms[-1]:.1f} never={never[0]}")
