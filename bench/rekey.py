"""keyraft rekey benchmark: how long a full rekey (`rotate -full`) of
BENCH_REKEY_VARS Variables (default 1,000,000, 256-byte values) takes on a
3-server cluster, and what it does to foreground PUT latency.

One temp dir, three keyraft servers on 127.0.0.1 with ephemeral ports, as
in bench/cluster.py (whose start-up and wrk helpers this reuses), TLS off:

1. Load: the Variables bench/rekey/<0000000..> are PUT through the leader
   with HTTP/1.1 pipelining over 64 keep-alive connections (16 requests in
   flight on each), from one Python thread.
2. Foreground baseline, once every follower has caught up and the raft
   snapshots the load set off are written: wrk, 8 clients (one thread and
   connection each, client i to server i mod 3), three runs of
   BENCH_SECONDS (default 5) of PUT /v1/var/bench/fg/<n> with a 256-byte
   value over 1000 paths, after a 2 s warm-up.
3. PUT /v1/operator/keyring/rotate?full=true on the leader, and at once the
   same wrk load again, in runs of BENCH_SECONDS one after another until
   the rekey is done.  The rekey time runs from the rotate call until
   GET /v1/operator/keyring/rekey (polled every 50 ms on the leader) says
   Running false.  Every window is printed with the raft snapshots the
   servers were writing in it (their /v1/agent/health, every 250 ms),
   the cores the three servers used (their utime + stime, /proc/PID/stat)
   and the share of the machine's CPU time the hypervisor gave to other
   guests meanwhile (steal, /proc/stat).  The servers' CPU time from the
   rotate call to the end of the rekey is printed per server and per
   Variable (with the foreground's share in it, unless BENCH_REKEY_FG=0).
   The goal's ratio is the p99 of every PUT during the rekey over the p99
   of every PUT in the baseline: each window's latency quantiles, weighted
   by its requests (the last window by the part the rekey covered), are
   pooled (bench/cluster.py pooled_p99).  The baseline is the steady
   state, raft snapshots that its own writes set off included; the ratio
   against only its windows without one, and the worst single window
   against the pooled baseline, with and without a raft snapshot in it,
   follow.
4. Check: the old key is inactive and 1000 sampled Variables read back.

Environment:
  KEYRAFT_BIN          keyraft binary (default build/keyraft; built into
                       /tmp/bench-build if missing)
  BENCH_REKEY_VARS     Variables to load and rekey (default 1000000)
  BENCH_SECONDS        seconds per wrk run (default 5)
  BENCH_REKEY_SNAPSHOT_THRESHOLD
                       raft_snapshot_threshold for the servers (default:
                       the server's, 8192); a large value keeps raft
                       snapshots of the whole state out of the measurement
  BENCH_REKEY_WRITE_RATE
                       raft_snapshot_write_rate (MB/s) for the servers
                       (default: the server's)
  BENCH_REKEY_RATE     root_key_rekey_rate (Variables/s) for the servers
                       (default: the server's)
  BENCH_REKEY_FG       0: no foreground load, only the rekey (its CPU cost
                       alone, without the p99 figures; default 1)
  BENCH_FORM_TIMEOUT   seconds to wait for the cluster (default 30)
  BENCH_DIR            parent of the temp dir (default: the system temp dir)

Reproduce with: /usr/bin/python3 bench/rekey.py
"""
import collections
import json
import os
import random
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402  bench/cluster.py: start-up and wrk helpers

NVARS = int(os.environ.get("BENCH_REKEY_VARS", "1000000"))
# raft_snapshot_threshold for the servers; unset = the server's default.
SNAP = os.environ.get("BENCH_REKEY_SNAPSHOT_THRESHOLD", "")
# raft_snapshot_write_rate (MB/s) for the servers; unset = the default.
RATE = os.environ.get("BENCH_REKEY_WRITE_RATE", "")
# root_key_rekey_rate (Variables/s) for the servers; unset = the default.
REKEY_RATE = os.environ.get("BENCH_REKEY_RATE", "")
# 0: the rekey alone, to measure its CPU cost without the foreground's.
FG = os.environ.get("BENCH_REKEY_FG", "1") != "0"
SECS = cluster.SECS
CLIENTS = 8
BASE_WINDOWS = 3    # of SECS each, before the rekey
STEAL_WARN = 0.05   # a window with more CPU time stolen is not to be trusted
VALUE = "v" * 256
GOAL_TIME = "goal: under 60 s for 1,000,000 (Nomad's 100/s limit: ~2.8 h)"
GOAL_P99 = "goal: < 2x"


def var_path(i):
    return f"bench/rekey/{i:07d}"


class _Conn:
    def __init__(self, addr, first, step, end):
        self.sock = socket.create_connection(addr, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.next, self.step, self.end = first, step, end
        self.inflight = collections.deque()  # request numbers, in order
        self.retry = collections.deque()
        self.hold_until = 0.0
        self.closed = False
        self.out = bytearray()
        self.inb = bytearray()

    def finished(self):
        return self.next >= self.end and not self.inflight and not self.retry

    def take(self):
        """The next request number to send, or None."""
        if self.retry:
            if time.time() < self.hold_until:
                return None
            return self.retry.popleft()
        if self.next < self.end:
            self.next += self.step
            return self.next - self.step
        return None


def _replies(c):
    """(status, body) of the complete replies in c.inb (consumed)."""
    out = []
    buf, start = c.inb, 0
    while True:
        he = buf.find(b"\r\n\r\n", start)
        if he < 0:
            break
        head = bytes(buf[start:he])
        clen = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                clen = int(v)
        end = he + 4 + clen
        if len(buf) < end:
            break
        out.append((int(head[9:12]), bytes(buf[he + 4:end])))
        start = end
    del buf[:start]
    return out


def pipelined(addr, n, request, conns=64, window=16, timeout=1800):
    """Sends request(i) (bytes of one HTTP/1.1 request) for i in 0..n-1
    over `conns` keep-alive connections to addr, up to `window` in flight
    on each.  A 503 (no leader for a moment) is sent again 200 ms later:
    the requests must be idempotent.  Returns ({status: count} of the
    final replies, the number of 503s retried, the first few bodies of
    other failures)."""
    sel = selectors.DefaultSelector()
    live = [_Conn(addr, k, conns, n) for k in range(min(conns, n))]
    counts = {}
    retried = 0
    errors = []
    deadline = time.time() + timeout
    try:
        for c in live:
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                         c)
        pending = len(live)
        while pending:
            if time.time() > deadline:
                raise SystemExit(f"bench: loading took over {timeout}s")
            for key, ev in sel.select(0.05):
                c = key.data
                if ev & selectors.EVENT_READ:
                    chunk = c.sock.recv(1 << 18)
                    if not chunk:
                        raise SystemExit("bench: a server closed a loading "
                                         "connection")
                    c.inb += chunk
                    for st, body in _replies(c):
                        i = c.inflight.popleft()
                        if st == 503:
                            retried += 1
                            c.retry.append(i)
                            c.hold_until = time.time() + 0.2
                            continue
                        counts[st] = counts.get(st, 0) + 1
                        if st != 200 and len(errors) < 3:
                            errors.append(f"{st} {body[:200]!r}")
            for c in live:
                if c.closed:
                    continue
                while len(c.inflight) < window:
                    i = c.take()
                    if i is None:
                        break
                    c.out += request(i)
                    c.inflight.append(i)
                if c.out:
                    try:
                        del c.out[:c.sock.send(c.out)]
                    except BlockingIOError:
                        pass
                if c.finished():
                    sel.unregister(c.sock)
                    c.closed = True
                    pending -= 1
                else:
                    sel.modify(c.sock, selectors.EVENT_READ | (
                        selectors.EVENT_WRITE if c.out else 0), c)
    finally:
        for c in live:
            c.sock.close()
        sel.close()
    return counts, retried, errors


def load(leader, n):
    body = json.dumps({"Items": {"value": VALUE}}).encode()
    head = ("PUT /v1/var/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}"
            "\r\n\r\n")
    start = time.time()
    counts, retried, errors = pipelined(
        leader["addr"], n, lambda i: (head % var_path(i)).encode() + body)
    secs = time.time() - start
    if counts.get(200, 0) != n:
        raise SystemExit(f"bench: loading answered {counts}, not {n} x 200, "
                         f"in {secs:.0f} s; first errors: {errors}")
    return secs, retried


def fg_lua():
    body = json.dumps({"Items": {"value": VALUE}})
    return ('wrk.method = "PUT"\n'
            f"wrk.body = {json.dumps(body)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            "request = function()\n"
            "  n = n + 1\n"
            '  return wrk.format(nil, "/v1/var/bench/fg/" .. (n % 1000))\n'
            "end\n")


def index_of(url):
    req = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.headers.get("X-Nomad-Index", "0"))
    except (OSError, ValueError):
        return 0


def settle(servers, leader, timeout=600):
    """Waits until every server has applied what the leader had when
    called: a follower still catching up (or installing a snapshot) after
    the load would otherwise be measured as foreground latency.  Returns
    the seconds waited."""
    start = time.time()
    target = index_of(leader["base"] + "/v1/vars?prefix=bench/none/")
    for s in servers:
        while index_of(s["base"] + "/v1/vars?prefix=bench/none/&stale") < \
                target:
            if time.time() - start > timeout:
                raise SystemExit(f"bench: {s['name']} did not catch up "
                                 f"with index {target} in {timeout}s")
            time.sleep(0.2)
    return time.time() - start


def snapshots_done(servers, timeout=120):
    """Waits until no server is writing a raft snapshot or freeing the
    blocks of removed ones (two polls 0.5 s apart agree): the load ends
    with one on every server, which belongs to neither the baseline nor
    the rekey.  Returns the seconds waited."""
    start = time.time()
    quiet = 0
    while quiet < 2:
        if time.time() - start > timeout:
            raise SystemExit(f"bench: raft snapshots still running after "
                             f"{timeout}s")
        busy = False
        for s in servers:
            st, body = cluster.http("GET", s["base"] + "/v1/agent/health")
            try:
                if st == 200:
                    raft = json.loads(body)["raft"]
                    busy |= (raft["snapshot_running"] or
                             raft.get("freeing_bytes", 0) > 0)
            except (ValueError, KeyError):
                busy = True
        quiet = 0 if busy else quiet + 1
        time.sleep(0.5)
    return time.time() - start


def rekey_status(leader):
    st, body = cluster.http("GET", leader["base"] +
                            "/v1/operator/keyring/rekey", timeout=10)
    if st != 200:
        return None
    return json.loads(body)


def retry_503(fn, timeout=30):
    """fn() -> (status, body); sent again while it answers 503 or fails to
    connect (a leader election), up to timeout seconds."""
    deadline = time.time() + timeout
    while True:
        st, body = fn()
        if st not in (0, 503) or time.time() > deadline:
            return st, body
        time.sleep(0.2)


def keys(base):
    st, body = retry_503(lambda: cluster.http(
        "GET", base + "/v1/operator/keyring/keys", timeout=10))
    if st != 200:
        raise SystemExit(f"bench: keyring list answered {st}")
    return {k["KeyID"]: k for k in json.loads(body)}


def with_server_keys(keys):
    """bench/cluster.py writes the server configurations; this appends
    server {} keys (name: value) to each of them."""
    base = cluster.keyraft_config
    lines = "".join(f"  {k} = {v}\n" for k, v in keys.items())

    def config(*args):
        return base(*args) + f"server {{\n{lines}}}\n"

    cluster.keyraft_config = config


class LeaderWatch:
    """Asks every server for its leader every 250 ms from a thread and
    keeps each change (a new address, or none known) with its time: raft
    elections under load show up here.  It also reads each server's raft
    section of /v1/agent/health, to tell which windows held a raft
    snapshot being written."""

    def __init__(self, servers):
        self.servers = servers
        self.changes = []
        self.unanswered = []
        self.snaps = []     # (time, server, running, taken, bytes)
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        last = {}
        while not self.stop_ev.wait(0.25):
            for s in self.servers:
                t0 = time.time()
                leader = cluster.keyraft_leader(s["base"])
                if not leader:
                    # No answer in 2 s (or no leader): not a change of
                    # leader by itself; kept apart.
                    self.unanswered.append((t0, s["name"],
                                            time.time() - t0))
                    continue
                if s["name"] in last and last[s["name"]] != leader:
                    self.changes.append((time.time(), s["name"], leader))
                last[s["name"]] = leader
                st, body = cluster.http("GET", s["base"] + "/v1/agent/health")
                try:
                    raft = json.loads(body)["raft"]
                except (ValueError, KeyError):
                    continue
                self.snaps.append((t0, s["name"], raft["snapshot_running"],
                                   raft["snapshots_taken"],
                                   raft["last_snapshot_bytes"]))

    def elections(self, since, until):
        """Leadership disruptions in the window: changes seen by any
        server, those less than 1 s apart counted as one."""
        n, prev = 0, None
        for t, _, _ in self.changes:
            if since <= t <= until:
                if prev is None or t - prev > 1.0:
                    n += 1
                prev = t
        return n

    def snapshots_in(self, since, until):
        """{server: MB of the snapshot, or None if not known} for the
        servers that were writing a raft snapshot at some point in the
        window: seen running, or one finished between the polls around
        it.  Its size comes from the first poll that counts it done."""
        out = {}
        for name in sorted({n for _, n, _, _, _ in self.snaps}):
            mine = [x for x in self.snaps if x[1] == name]
            before = [x for x in mine if x[0] < since]
            inside = [x for x in mine if since <= x[0] <= until]
            after = [x for x in mine if x[0] > until]
            edge = before[-1:] + inside + after[:1]
            if not (any(x[2] for x in inside) or
                    (len(edge) > 1 and edge[-1][3] > edge[0][3])):
                continue
            taken = edge[0][3] if before else 0
            done = [x for x in inside + after if x[3] > taken]
            out[name] = round(done[0][4] / 1e6) if done else None
        return out

    def unanswered_in(self, since, until):
        """Polls of /v1/status/leader that got no leader within 2 s."""
        return [(name, round(secs, 1)) for t, name, secs in self.unanswered
                if since <= t <= until]

    def stop(self):
        self.stop_ev.set()
        self.thread.join()


def steal_ticks():
    """The machine's CPU time taken by the hypervisor for other guests
    (steal, /proc/stat), in clock ticks, all CPUs together."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


def cpu_ticks(servers):
    """Each server's CPU time so far (utime + stime, /proc/PID/stat), in
    clock ticks, by name."""
    out = {}
    for s in servers:
        with open(f"/proc/{s['proc'].pid}/stat") as f:
            # The fields after the command's ")": state is field 3.
            fields = f.read().rsplit(")", 1)[1].split()
        out[s["name"]] = int(fields[11]) + int(fields[12])
    return out


def timed_wrk(script, url, wrk_out, servers):
    """One window of the foreground load: (start time, wrk result with
    "steal", the share of the machine's CPU time stolen meanwhile, and
    "cpu", the cores the servers used together)."""
    t, st0, c0 = time.time(), steal_ticks(), cpu_ticks(servers)
    row = cluster.wrk(script, url, CLIENTS, SECS, wrk_out)
    c1, st1, dt = cpu_ticks(servers), steal_ticks(), time.time() - t
    hz = os.sysconf("SC_CLK_TCK")
    row["steal"] = (st1 - st0) / (dt * hz * os.cpu_count()) if dt > 0 else 0.0
    row["cpu"] = sum(c1[n] - c0[n] for n in c1) / hz / dt if dt > 0 else 0.0
    return t, row


def run(work, binary, out):
    """The whole measurement; fills out with the figures as they come."""
    procs = cluster.Procs()
    watch = None
    extra = {}
    if SNAP:
        extra["raft_snapshot_threshold"] = int(SNAP)
    if RATE:
        extra["raft_snapshot_write_rate"] = int(RATE)
    if REKEY_RATE:
        extra["root_key_rekey_rate"] = int(REKEY_RATE)
    if extra:
        with_server_keys(extra)
    try:
        servers = cluster.keyraft_start(procs, work, 3, binary)
        cluster.keyraft_check(servers)
        leader = next(s for s in servers if s["leader"])
        watch = LeaderWatch(servers)
        t_load = time.time()
        out["load_s"], out["load_503"] = load(leader, NVARS)
        out["settle_s"] = settle(servers, leader)
        out["quiet_s"] = snapshots_done(servers)
        out["load_elections"] = watch.elections(t_load, time.time())

        script = cluster.write_lua(work, "fg", [s["addr"] for s in servers],
                                   fg_lua())
        url = servers[0]["base"] + "/"
        wrk_out = os.path.join(work, "wrk.json")
        if FG:
            cluster.wrk(script, url, CLIENTS, 2, wrk_out)   # warm-up
        t_base = time.time()
        out["base"] = []    # (start time, wrk result)
        # Up to three times as many windows as BASE_WINDOWS, until that
        # many lost no more than STEAL_WARN of the CPU to other guests:
        # the load's own writeback sometimes keeps the host busy (steal)
        # for the first windows after it.
        for _ in range(3 * BASE_WINDOWS if FG else 0):
            out["base"].append(timed_wrk(script, url, wrk_out, servers))
            if sum(w["steal"] <= STEAL_WARN
                   for _, w in out["base"]) >= BASE_WINDOWS:
                break
        out["base_elections"] = watch.elections(t_base, time.time())

        old = [k for k, m in keys(leader["base"]).items()
               if m["State"] in ("active", "inactive")]
        during = []         # (start time, wrk result), back to back
        failed = []
        rekey_done = threading.Event()

        def load_during():
            # Windows of SECS one after another while the rekey runs, so
            # that one holding a raft snapshot can be told from the rest.
            while not during or not rekey_done.is_set():
                try:
                    during.append(timed_wrk(script, url, wrk_out, servers))
                except SystemExit as e:
                    failed.append(str(e))
                    return

        start, cpu0 = time.time(), cpu_ticks(servers)
        st, body = cluster.http("PUT", leader["base"] +
                                "/v1/operator/keyring/rotate?full=true",
                                timeout=30)
        if st != 200:
            raise SystemExit(f"bench: rotate?full=true answered {st}: "
                             f"{body[:200]!r}")
        fg = threading.Thread(target=load_during)
        if FG:
            fg.start()
        total, last = None, None
        while True:
            status = rekey_status(leader)
            if status is not None:
                last = status
                if total is None and status["Keys"]:
                    total = sum(k["Total"] for k in status["Keys"])
                if not status["Running"]:
                    break
            if time.time() - start > 3600:
                raise SystemExit(f"bench: rekey not done after 1 h: {last}")
            time.sleep(0.05)
        out["rekey_s"] = time.time() - start
        cpu1 = cpu_ticks(servers)
        out["cpu"] = [(s["name"], s["leader"],
                       (cpu1[s["name"]] - cpu0[s["name"]])
                       / os.sysconf("SC_CLK_TCK")) for s in servers]
        rekey_done.set()
        out["total"] = total if total is not None else NVARS
        if last.get("Error"):
            out["error"] = last["Error"]
        if FG:
            fg.join()
        out["rekey_elections"] = watch.elections(start, time.time())
        out["unanswered"] = watch.unanswered_in(t_load, time.time())
        if failed:
            raise SystemExit(failed[0])
        time.sleep(0.6)     # a poll after the last window
        end = start + out["rekey_s"]
        out["during"] = [
            {"at": t - start, "covered": max(min(end - t, SECS), 0),
             "snaps": watch.snapshots_in(t, t + SECS), **row}
            for t, row in during]
        out["windows"] = [t for t, _ in out["base"]] + [t for t, _ in during]
        out["base"] = [{"snaps": watch.snapshots_in(t, t + SECS), **row}
                       for t, row in out["base"]]

        # Check: the old keys are inactive (no Variable left under them)
        # and a sample of Variables reads back through every server.
        now = keys(leader["base"])
        bad = [k for k in old if now[k]["State"] != "inactive"]
        if bad:
            raise SystemExit(f"bench: keys still not inactive: {bad}")
        for i in random.Random(1).sample(range(NVARS), min(NVARS, 1000)):
            s = servers[i % 3]
            st, body = retry_503(
                lambda: cluster.http("GET", s["base"] + "/v1/var/" +
                                     var_path(i), timeout=10))
            if st != 200 or cluster.keyraft_items(body) != VALUE:
                raise SystemExit(f"bench: {var_path(i)} via {s['name']}: "
                                 f"{st} {body[:200]!r}")
        out["checked"] = True
    finally:
        if watch is not None:
            watch.stop()
        procs.stop()


def main():
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk missing; run KR_DEPS_BENCH=1 "
                         "scripts/deps.sh")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = cluster.keyraft_bin()
    work = tempfile.mkdtemp(prefix="keyraft-rekey-bench-",
                            dir=os.environ.get("BENCH_DIR"))
    r = {}
    failed = None
    try:
        run(work, binary, r)
    except cluster.ClusterFailed as e:
        failed = f"bench: rekey: the cluster did not form: {e}"
    except SystemExit as e:
        failed = str(e)
    finally:
        if os.environ.get("BENCH_KEEP"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if "during" not in r:
        print(failed or "bench: rekey: no figures", file=sys.stderr)
        return 1

    ms = cluster.fmt_ms
    base, dur = r["base"], r["during"]
    print(f"\nFull rekey on a 3-server keyraft cluster, {NVARS:,} Variables "
          f"of 256 B, {os.cpu_count()} cores (servers, loader and wrk on the "
          "same machine), raft_snapshot_threshold "
          f"{SNAP or 'default'}, raft_snapshot_write_rate "
          f"{RATE or 'default'}, root_key_rekey_rate "
          f"{REKEY_RATE or 'default'}")
    print(f"load:      {NVARS:,} Variables in {r['load_s']:.1f} s "
          f"({NVARS / r['load_s']:.0f}/s), pipelined PUTs to the leader; "
          f"{r['load_503']} answered 503 and were sent again; "
          f"followers caught up {r['settle_s']:.1f} s later; the raft "
          f"snapshots the load set off were done, and their old files "
          f"freed, {r['quiet_s']:.1f} s after that")
    print(f"rekey:     {r['total']:,} Variables in {r['rekey_s']:.1f} s = "
          f"{r['total'] / r['rekey_s']:.0f} Variables/s (rotate?full=true "
          "until the rekey status says Running false; 50 ms polling)")
    print(GOAL_TIME)
    if r.get("error"):
        print(f"rekey reported: {r['error']}")
    cpu = r["cpu"]
    print("servers' CPU from the rotate call to the end of the rekey: "
          + ", ".join(f"{n}{' (leader)' if lead else ''} {t:.1f} s"
                      for n, lead, t in cpu)
          + f" = {sum(t for _, _, t in cpu) * 1e6 / max(r['total'], 1):.1f}"
          " us per Variable"
          + (" (the foreground's share included)" if FG else
             " (no foreground load: BENCH_REKEY_FG=0)"))
    if not FG:
        return finish(binary, failed)
    print(f"foreground PUT, {CLIENTS} clients, {SECS}s, 256 B over 1000 "
          "paths, client i -> server i mod 3:")
    print(f"  {'':<22}{'req/s':>10}{'p50':>10}{'p99':>10}{'errors':>8}"
          f"{'steal':>7}{'servers':>9}  raft snapshots being written")

    def snaps_text(snaps):
        return ", ".join(f"{n} {mb} MB" if mb is not None else
                         f"{n} still running"
                         for n, mb in snaps.items()) or "none"

    def row_text(name, row, snaps):
        return (f"  {name:<22}{row['rps']:>10.0f}{ms(row['p50']):>10}"
                f"{ms(row['p99']):>10}{row['errors']:>8}"
                f"{row['steal'] * 100:>6.1f}%"
                f"{row['cpu']:>6.2f} cpu  " + snaps_text(snaps))

    for i, w in enumerate(base):
        print(row_text(f"without rekey {i * SECS}-{(i + 1) * SECS} s", w,
                       w["snaps"]))
    for w in dur:
        span = f"{w['at']:.0f}-{w['at'] + SECS:.0f} s"
        print(row_text(f"during rekey {span}", w, w["snaps"]))
        if w["covered"] < SECS:
            print(f"  (the rekey ran during the first "
                  f"{w['covered']:.1f} s of this run only)")

    # The goal's figure: every request during the rekey against every
    # request without it (the last window counts for the part of it the
    # rekey covered).  Then the stricter one: the worst single window.
    def pooled_dur(rows):
        return cluster.pooled_p99(rows, [w["covered"] / SECS for w in rows])

    # Windows taken again because of steal: the baseline is the ones
    # that lost little to it (if any did), which can only raise the
    # ratio; every window is listed above.
    base_all = base
    if len(base) > BASE_WINDOWS and any(w["steal"] <= STEAL_WARN
                                        for w in base):
        base = [w for w in base if w["steal"] <= STEAL_WARN]
        print(f"  ({len(base_all) - len(base)} window(s) without rekey "
              f"lost over {STEAL_WARN * 100:.0f}% of the CPU to steal and "
              f"were taken again; the baseline is the other {len(base)})")
    p99_base = cluster.pooled_p99(base)
    p99_dur = pooled_dur(dur)

    def ratio(rows):
        worst = max(w["p99"] for w in rows)
        return worst / p99_base if p99_base else float("inf")

    quiet = [w for w in dur if not w["snaps"]]
    print(f"p99 without rekey, its {len(base)} windows pooled: "
          f"{ms(p99_base)}; during the rekey, its {len(dur)} windows "
          f"pooled: {ms(p99_dur)}")
    print(f"p99 during / without: "
          f"{p99_dur / p99_base if p99_base else float('inf'):.2f}x   "
          f"{GOAL_P99}")
    # The foreground load sets off raft snapshots of its own: the
    # baseline is the steady state with them.  Against only its windows
    # that held none, for comparison:
    base_quiet = [w for w in base if not w["snaps"]]
    if base_quiet and len(base_quiet) < len(base):
        p99_bq = cluster.pooled_p99(base_quiet)
        print(f"p99 during / without, against the {len(base_quiet)} "
              f"window(s) without rekey that held no raft snapshot "
              f"({ms(p99_bq)}): {p99_dur / p99_bq:.2f}x")
    print(f"p99 worst window during / without: {ratio(dur):.2f}x")
    if len(quiet) < len(dur):
        print("p99 worst window without a raft snapshot during / "
              "without: " + (f"{ratio(quiet):.2f}x" if quiet else
                             "- (every window held one)"))
        print("  (a raft snapshot: a server encodes its whole state and "
              "writes it, at raft_snapshot_write_rate, to the disk all "
              "three share here; see docs/operations.md, the rekey "
              "benchmark)")
    stolen = max(w["steal"] for w in base + dur)
    if stolen > STEAL_WARN:
        print(f"p99 ratios: the hypervisor took {stolen * 100:.0f}% of "
              "this machine's CPU time in a window (steal); with noisy "
              "neighbours the ratios say little, run again")
        # The same over the windows it left alone, when there are some
        # on both sides.
        ok = [[w for w in rows if w["steal"] <= STEAL_WARN]
              for rows in (base, dur)]
        if ok[0] and ok[1]:
            p99_ok = [cluster.pooled_p99(ok[0]), pooled_dur(ok[1])]
            print(f"p99 during / without, only the windows with under "
                  f"{STEAL_WARN * 100:.0f}% steal ({len(ok[0])} without "
                  f"rekey, {len(ok[1])} during): {ms(p99_ok[0])} and "
                  f"{ms(p99_ok[1])}: {p99_ok[1] / p99_ok[0]:.2f}x")
    print("leadership changes seen (/v1/status/leader every 250 ms): "
          f"{r['load_elections']} while loading, {r['base_elections']} "
          f"without rekey, {r['rekey_elections']} during the rekey")
    if os.environ.get("BENCH_KEEP"):
        # To line the windows up with the servers' logs (UTC).
        names = [f"without rekey {i * SECS} s" for i in range(len(base))] + \
            [f"during rekey {w['at']:.0f} s" for w in dur]
        for name, t in zip(names, r["windows"]):
            print(f"window {name}: {SECS} s from "
                  + time.strftime("%H:%M:%S", time.gmtime(t))
                  + f".{int(t * 1000) % 1000:03d}Z")
    if r.get("unanswered"):
        print("status polls without a leader in the answer (server, "
              f"seconds): {r['unanswered']}")
    return finish(binary, failed)


def finish(binary, failed):
    """The command that reproduces the run, and its outcome."""
    env = f"BENCH_REKEY_SNAPSHOT_THRESHOLD={SNAP} " if SNAP else ""
    if RATE:
        env += f"BENCH_REKEY_WRITE_RATE={RATE} "
    if REKEY_RATE:
        env += f"BENCH_REKEY_RATE={REKEY_RATE} "
    env += f"BENCH_SECONDS={SECS} " if FG else "BENCH_REKEY_FG=0 "
    print(f"reproduce: KEYRAFT_BIN={binary} BENCH_REKEY_VARS={NVARS} "
          f"{env}/usr/bin/python3 bench/rekey.py")
    if failed:
        print(f"check failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
