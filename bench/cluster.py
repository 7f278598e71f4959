"""keyraft cluster benchmark: Variable PUT on a 3-server keyraft cluster
against PUT on a 3-member etcd 3.4 cluster, measured in the same run.

Both clusters run on 127.0.0.1 with ephemeral ports, each member with its own
data dir under one temp dir (same disk), one cluster at a time.  Load is wrk
with one thread per client (keep-alive, one connection each), 1 KiB values
over 1000 keys, BENCH_SECONDS (default 5) per row at 1, 8 and 64 clients:

  keyraft: PUT /v1/var/bench/put/<n>  {"Items":{"value":<1 KiB>}}
  etcd:    POST /v3/kv/put            {"key":<b64>,"value":<b64 of 1 KiB>}
           (its HTTP/JSON gRPC gateway)

Client i connects to member i mod 3 (--to all, the default) or every client
to the leader (--to leader); the same rule for both systems.  req/s counts
2xx replies only; errors = non-2xx replies + socket errors + timeouts.

keyraft runs twice in the same run: with TLS off, and with TLS on (clients
over HTTPS, and mutual TLS with verify_server_hostname between servers for
raft, forwarding and membership; certificates from `keyraft tls`).  etcd's
gateway is plain HTTP here, as in its default setup.

Options:  --single      one keyraft server (bootstrap_expect = 1) instead of
                        three, to test the plumbing; etcd stays 3 members
          --to all|leader
          --clients 1,8,64
          --tls off|on|both   which keyraft runs (default both)
Environment:
  KEYRAFT_BIN          keyraft binary (default build/keyraft; if missing, it
                       is built into /tmp/bench-build)
  BENCH_SECONDS        seconds per row (default 5)
  BENCH_FORM_TIMEOUT   seconds to wait for the keyraft cluster (default 30)
  BENCH_STRICT=1       exit 1 if the keyraft cluster did not form
  BENCH_DIR            parent of the temp dir (default: the system temp dir)

Reproduce with: /usr/bin/python3 bench/cluster.py
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECS = int(os.environ.get("BENCH_SECONDS", "5"))
FORM_TIMEOUT = float(os.environ.get("BENCH_FORM_TIMEOUT", "30"))
STRICT = os.environ.get("BENCH_STRICT", "0") == "1"
VALUE = "v" * 1024
NKEYS = 1000
GOAL = "goal: ratio >= 3 at 64 clients"
# BENCH_SNAPSHOT_THRESHOLD=N sets the servers' raft_snapshot_threshold.
SNAP = (f"  raft_snapshot_threshold = "
        f"{int(os.environ['BENCH_SNAPSHOT_THRESHOLD'])}\n"
        if os.environ.get("BENCH_SNAPSHOT_THRESHOLD") else "")


class ClusterFailed(Exception):
    """The cluster under test did not come up (or does not accept writes)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Trusts the keyraft CA once a TLS run has made one (see make_tls).
TLS_CTX = None


def http(method, url, body=None, timeout=2):
    """(status, body bytes); status 0 if the connection failed."""
    data = None if body is None else (
        body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        ctx = TLS_CTX if url.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return 0, b""


def log_tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [l.rstrip() for l in f if l.strip()]
        return " | ".join(lines[-n:]) or "(empty log)"
    except OSError:
        return "(no log)"


class Procs:
    """Every process this script starts; stop() ends them by PID."""

    def __init__(self):
        self.items = []

    def start(self, argv, log):
        f = open(log, "w")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        f.close()
        self.items.append(p)
        return p

    def stop(self):
        for p in self.items:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.items:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.items = []


# ---------------------------------------------------------------- keyraft

def keyraft_bin():
    b = os.environ.get("KEYRAFT_BIN")
    if b:
        return os.path.abspath(b)
    b = os.path.join(ROOT, "build", "keyraft")
    if os.path.exists(b):
        return b
    print("bench: build/keyraft missing; building into /tmp/bench-build",
          file=sys.stderr)
    subprocess.run(["cmake", "-S", ROOT, "-B", "/tmp/bench-build"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", "/tmp/bench-build", "-j2"],
                   check=True, stdout=subprocess.DEVNULL)
    return "/tmp/bench-build/keyraft"


def make_tls(work, binary):
    """CA and server certificate from `keyraft tls`; returns the tls block
    (HTTPS for clients, mutual TLS between servers) and trusts the CA for
    this script's own requests."""
    global TLS_CTX
    pki = os.path.join(work, "pki")
    os.mkdir(pki)
    for args in (["tls", "ca", "create"], ["tls", "cert", "create", "-server"]):
        subprocess.run([binary, *args], cwd=pki, check=True,
                       capture_output=True)
    TLS_CTX = ssl.create_default_context(
        cafile=os.path.join(pki, "keyraft-agent-ca.pem"))
    TLS_CTX.check_hostname = False
    return ("tls {\n  http = true\n  rpc = true\n"
            "  verify_server_hostname = true\n"
            f'  ca_file = "{pki}/keyraft-agent-ca.pem"\n'
            f'  cert_file = "{pki}/global-server-keyraft.pem"\n'
            f'  key_file = "{pki}/global-server-keyraft-key.pem"\n}}\n')


def keyraft_config(data_dir, http_port, rpc_port, rpc_ports, tls_hcl):
    """The agent HCL for one server.  rpc_ports: every server's RPC port
    (one entry = single server, bootstrap_expect = 1, no server_join);
    tls_hcl: a tls block or ""."""
    if len(rpc_ports) == 1:
        join = ""
    else:
        peers = ", ".join(f'"127.0.0.1:{q}"' for q in rpc_ports)
        join = ("  server_join {\n"
                f"    retry_join = [{peers}]\n"
                '    retry_interval = "1s"\n'
                "  }\n")
    return (f'data_dir = "{data_dir}"\n'
            'bind_addr = "127.0.0.1"\n'
            f'log_level = "{os.environ.get("BENCH_LOG_LEVEL", "warn")}"\n'
            f"ports {{\n  http = {http_port}\n  rpc = {rpc_port}\n}}\n"
            "server {\n  enabled = true\n"
            f"  bootstrap_expect = {len(rpc_ports)}\n"
            f"{SNAP}{join}}}\n" + tls_hcl)


def keyraft_leader(base):
    st, body = http("GET", base + "/v1/status/leader")
    if st != 200:
        return ""
    try:
        v = json.loads(body)
    except ValueError:
        return ""
    return v if isinstance(v, str) else ""


def keyraft_start(procs, work, n, binary, tls_hcl=""):
    """Start n keyraft servers; return their descriptions once the cluster
    is ready (health 200 and a leader known on every server).  Raises
    ClusterFailed within BENCH_FORM_TIMEOUT seconds otherwise."""
    if not os.access(binary, os.X_OK):
        raise ClusterFailed(f"no keyraft binary at {binary}")
    servers = [{"name": f"k{i + 1}", "http": free_port(), "rpc": free_port()}
               for i in range(n)]
    rpc_ports = [s["rpc"] for s in servers]
    scheme = "https" if tls_hcl else "http"
    for s in servers:
        s["base"] = f"{scheme}://127.0.0.1:{s['http']}"
        s["addr"] = ("127.0.0.1", s["http"])
        cfg = os.path.join(work, s["name"] + ".hcl")
        with open(cfg, "w") as f:
            f.write(keyraft_config(os.path.join(work, s["name"]), s["http"],
                                   s["rpc"], rpc_ports, tls_hcl))
        s["log"] = os.path.join(work, s["name"] + ".log")
        s["proc"] = procs.start([binary, "agent", "-config", cfg], s["log"])

    deadline = time.time() + FORM_TIMEOUT
    while True:
        for s in servers:
            rc = s["proc"].poll()
            if rc is not None:
                raise ClusterFailed(f"server {s['name']} exited with code {rc}: "
                                    f"{log_tail(s['log'])}")
        leaders = []
        for s in servers:
            st, _ = http("GET", s["base"] + "/v1/agent/health", timeout=1)
            leaders.append(keyraft_leader(s["base"]) if st == 200 else "")
        # Every server must name the same leader: separate one-server
        # clusters (each its own leader) are not a cluster.
        if all(leaders) and len(set(leaders)) == 1:
            break
        if time.time() > deadline:
            seen = ", ".join(f"{s['name']}: {l or 'none'}"
                             for s, l in zip(servers, leaders))
            raise ClusterFailed(
                f"no agreed healthy leader after {FORM_TIMEOUT:.0f}s "
                f"(leaders {seen}); {servers[0]['name']} log: "
                f"{log_tail(servers[0]['log'])}")
        time.sleep(0.2)
    leader = leaders[0]
    for s in servers:
        s["leader"] = leader.endswith(f":{s['rpc']}")
    return servers


def keyraft_items(body):
    try:
        return json.loads(body)["Items"]["value"]
    except (ValueError, KeyError, TypeError):
        return None


def keyraft_check(servers):
    """One PUT through every server (200 and the stored 1 KiB value back),
    then read it back from the next server: the writes are replicated."""
    for i, s in enumerate(servers):
        path = "/v1/var/bench/check/" + s["name"]
        st, body = http("PUT", s["base"] + path, {"Items": {"value": VALUE}},
                        timeout=5)
        if st != 200 or keyraft_items(body) != VALUE:
            raise ClusterFailed(f"PUT via {s['name']} returned {st}: "
                                f"{body[:200]!r}")
        other = servers[(i + 1) % len(servers)]
        deadline = time.time() + 5
        while True:
            st, body = http("GET", other["base"] + path)
            if st == 200 and keyraft_items(body) == VALUE:
                break
            if time.time() > deadline:
                raise ClusterFailed(f"PUT via {s['name']} not readable on "
                                    f"{other['name']} after 5s: {st} "
                                    f"{body[:200]!r}")
            time.sleep(0.1)


def keyraft_lua():
    body = json.dumps({"Items": {"value": VALUE}})
    return ('wrk.method = "PUT"\n'
            f"wrk.body = {json.dumps(body)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            "request = function()\n"
            "  n = n + 1\n"
            '  return wrk.format(nil, "/v1/var/bench/put/" .. (n % '
            f"{NKEYS}))\n"
            "end\n")


# ---------------------------------------------------------------- etcd

def etcd_start(procs, work, n=3):
    members = [{"name": f"e{i + 1}", "client": free_port(),
                "peer": free_port()} for i in range(n)]
    initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}"
                       for m in members)
    token = f"keyraft-bench-{os.getpid()}-{int(time.time())}"
    for m in members:
        m["base"] = f"http://127.0.0.1:{m['client']}"
        m["addr"] = ("127.0.0.1", m["client"])
        m["log"] = os.path.join(work, m["name"] + ".log")
        m["proc"] = procs.start([
            "etcd", "--name", m["name"],
            "--data-dir", os.path.join(work, m["name"]),
            "--listen-client-urls", m["base"],
            "--advertise-client-urls", m["base"],
            "--listen-peer-urls", f"http://127.0.0.1:{m['peer']}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer']}",
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--logger", "zap", "--log-outputs", "stderr",
            "--log-level", "warn"], m["log"])
    deadline = time.time() + 30
    while True:
        for m in members:
            rc = m["proc"].poll()
            if rc is not None:
                raise ClusterFailed(f"etcd {m['name']} exited with code {rc}: "
                                    f"{log_tail(m['log'])}")
        status = [http("POST", m["base"] + "/v3/maintenance/status", {})
                  for m in members]
        health = [http("GET", m["base"] + "/health") for m in members]
        try:
            st = [json.loads(b) for c, b in status if c == 200]
            ok = (len(st) == n and all(c == 200 for c, _ in health)
                  and all(s.get("leader") for s in st))
        except ValueError:
            ok = False
        if ok:
            break
        if time.time() > deadline:
            raise ClusterFailed("etcd cluster not healthy after 30s: "
                                f"{log_tail(members[0]['log'])}")
        time.sleep(0.2)
    for m, s in zip(members, st):
        m["leader"] = s["header"]["member_id"] == s["leader"]
    return members


def b64(s):
    return base64.b64encode(s.encode()).decode()


def etcd_check(members):
    for m in members:
        key = b64("bench/check/" + m["name"])
        st, body = http("POST", m["base"] + "/v3/kv/put",
                        {"key": key, "value": b64(VALUE)}, timeout=5)
        if st != 200:
            raise ClusterFailed(f"etcd PUT via {m['name']} returned {st}: "
                                f"{body[:200]!r}")
        st, body = http("POST", m["base"] + "/v3/kv/range", {"key": key})
        try:
            ok = (st == 200 and
                  json.loads(body)["kvs"][0]["value"] == b64(VALUE))
        except (ValueError, KeyError, IndexError):
            ok = False
        if not ok:
            raise ClusterFailed(f"etcd read-back via {m['name']} failed: "
                                f"{st} {body[:200]!r}")


def etcd_lua():
    keys = ", ".join(f'"{b64(f"bench/put/{i}")}"' for i in range(NKEYS))
    return ('wrk.method = "POST"\n'
            'wrk.path = "/v3/kv/put"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"local keys = {{{keys}}}\n"
            f'local tail = \'","value":"{b64(VALUE)}"}}\'\n'
            "request = function()\n"
            "  n = n + 1\n"
            f"  local body = '{{\"key\":\"' .. keys[(n % {NKEYS}) + 1] .. tail\n"
            "  return wrk.format(nil, nil, nil, body)\n"
            "end\n")


# ---------------------------------------------------------------- wrk

# Shared by both targets: setup() pins thread i (one connection each) to
# target i mod #targets; done() writes the exact merged numbers as JSON.
LUA_COMMON = r'''
local targets = {%s}
local started = 0
n = 0
function setup(thread)
  local t = targets[(started %% #targets) + 1]
  thread.addr = wrk.lookup(t[1], t[2])[1]
  thread:set("first", started * 7)
  started = started + 1
end
function init(args)
  n = wrk.thread:get("first") or 0
end
-- QUANTILES: latency at every 0.5 %% up to 95 %% and every 0.01 %%
-- above, so that windows can be pooled (bench/cluster.py pooled_p99).
local function quantiles(latency)
  local q = {}
  for k = 1, 190 do q[#q + 1] = latency:percentile(k * 0.5) end
  for k = 9501, 10000 do q[#q + 1] = latency:percentile(k * 0.01) end
  return table.concat(q, ",")
end
function done(summary, latency, requests)
  local e = summary.errors
  local f = io.open(os.getenv("KR_WRK_OUT"), "w")
  f:write(string.format('{"requests":%%d,"duration_us":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"q_us":[%%s]}',
    summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    latency.max, quantiles(latency)))
  f:close()
end
'''


def write_lua(work, name, targets, body):
    tl = ", ".join(f'{{"{h}", "{p}"}}' for h, p in targets)
    path = os.path.join(work, name + ".lua")
    with open(path, "w") as f:
        f.write(LUA_COMMON % tl + body)
    return path


def wrk(script, url, clients, secs, out):
    env = dict(os.environ, KR_WRK_OUT=out)
    if os.path.exists(out):
        os.unlink(out)
    p = subprocess.run(["wrk", f"-t{clients}", f"-c{clients}", f"-d{secs}s",
                        "--timeout", "5s", "-s", script, url],
                       env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=secs + 60)
    if p.returncode or not os.path.exists(out):
        raise SystemExit(f"bench: wrk failed ({p.returncode}): {p.stderr}")
    with open(out) as f:
        r = json.load(f)
    errors = (r["connect"] + r["read"] + r["write"] + r["status"]
              + r["timeout"])
    ok = max(r["requests"] - r["status"], 0)
    return {"rps": ok / (r["duration_us"] / 1e6), "p50": r["p50_us"],
            "p99": r["p99_us"], "errors": errors, "n": r["requests"],
            "q": r.get("q_us", [])}


# The share of a window's requests each of the Lua's QUANTILES stands for.
Q_WEIGHTS = [0.005] * 190 + [0.0001] * 500


def pooled_p99(rows, shares=None):
    """The p99 of every request in rows (wrk results) taken together,
    from each window's quantiles weighted by its request count (times
    shares[i], the part of window i that counts); within 0.01 % of rank
    of the exact p99 of the merged requests."""
    points = []
    for i, row in enumerate(rows):
        share = 1.0 if shares is None else shares[i]
        if len(row["q"]) != len(Q_WEIGHTS):
            raise SystemExit("bench: a wrk run gave no quantiles")
        points += [(us, w * row["n"] * share)
                   for us, w in zip(row["q"], Q_WEIGHTS)]
    points.sort()
    total = sum(w for _, w in points)
    acc = 0.0
    for us, w in points:
        acc += w
        if acc >= 0.99 * total:
            return us
    return points[-1][0] if points else 0


def run_rows(work, name, members, lua_body, mode, clients):
    if mode == "leader":
        targets = [m["addr"] for m in members if m["leader"]]
    else:
        targets = [m["addr"] for m in members]
    script = write_lua(work, name, targets, lua_body)
    url = members[0]["base"] + "/"
    out = os.path.join(work, name + ".json")
    wrk(script, url, 8, 2, out)      # warm-up, not reported
    rows = {}
    for c in clients:
        rows[c] = wrk(script, url, c, SECS, out)
    return rows


def describe(members, mode):
    if mode == "leader":
        names = [m["name"] for m in members if m["leader"]]
        if not names:
            raise ClusterFailed("--to leader: no member's address matches "
                                "the reported leader")
        return f"all clients to the leader ({names[0]})"
    if len(members) == 1:
        return f"all clients to the one server ({members[0]['name']})"
    role = "leader" if members[0]["leader"] else "follower"
    names = "/".join(m["name"] for m in members)
    return (f"client i -> member i mod {len(members)} ({names}); "
            f"a 1-client row hits {members[0]['name']}, the {role}")


# ---------------------------------------------------------------- main

def fmt_ms(us):
    return f"{us / 1000:.2f}ms"


def run_keyraft(procs, work, name, nkr, binary, tls, mode, clients):
    """One keyraft run: {"rows", "fail", "desc"}."""
    kdir = os.path.join(work, name)
    os.mkdir(kdir)
    res = {"rows": None, "fail": None, "desc": "", "tls": tls}
    try:
        tls_hcl = make_tls(kdir, binary) if tls else ""
        servers = keyraft_start(procs, kdir, nkr, binary, tls_hcl)
        keyraft_check(servers)
        res["desc"] = describe(servers, mode)
        res["rows"] = run_rows(kdir, "keyraft", servers, keyraft_lua(), mode,
                               clients)
    except ClusterFailed as e:
        res["fail"] = str(e)
    finally:
        procs.stop()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--single", action="store_true",
                    help="one keyraft server (bootstrap_expect = 1)")
    ap.add_argument("--to", choices=("all", "leader"), default="all")
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--tls", choices=("off", "on", "both"), default="both",
                    help="keyraft with TLS off, on, or both (default)")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    for tool in ("wrk", "etcd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} missing; run "
                             "KR_DEPS_BENCH=1 scripts/deps.sh")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="keyraft-cluster-bench-",
                            dir=os.environ.get("BENCH_DIR"))
    procs = Procs()
    nkr = 1 if args.single else 3
    binary = keyraft_bin()
    tls_modes = {"off": [False], "on": [True], "both": [False, True]}[args.tls]
    runs = []
    try:
        for tls in tls_modes:
            runs.append(run_keyraft(procs, work, "tls" if tls else "clear",
                                    nkr, binary, tls, args.to, clients))
        edir = os.path.join(work, "etcd")
        os.mkdir(edir)
        members = etcd_start(procs, edir)
        etcd_check(members)
        et_desc = describe(members, args.to)
        et_rows = run_rows(edir, "etcd", members, etcd_lua(), args.to,
                           clients)
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nCluster Variable PUT, 1 KiB values, {SECS}s per row, keep-alive, "
          f"one wrk thread per client, {os.cpu_count()} cores "
          "(servers and wrk on the same machine)")
    for r in runs:
        label = ("keyraft-tls: HTTPS, RPC under mutual TLS" if r["tls"]
                 else "keyraft:     HTTP, RPC in clear")
        print(f"{label}, {nkr} server{'s' if nkr > 1 else ''}, "
              "PUT /v1/var/<path>; " + (r["desc"] or "-"))
        if r["fail"]:
            print(f"  cluster did not form: {r['fail']}")
    print("etcd:        3 members (etcd 3.4), POST /v3/kv/put via the JSON "
          "gateway (HTTP); " + et_desc)
    if args.single:
        print("NOTE: --single: 1 keyraft server vs 3 etcd members; the "
              "ratio is a plumbing check, not the goal comparison")
    print(f"{'target':<12}{'clients':>8}{'req/s':>10}{'p50':>10}{'p99':>10}"
          f"{'errors':>8}  vs etcd")
    for c in clients:
        e = et_rows[c]
        for r in runs:
            name = "keyraft-tls" if r["tls"] else "keyraft"
            if not r["rows"]:
                print(f"{name:<12}{c:>8}{'-':>10}{'-':>10}{'-':>10}{'-':>8}  -")
                continue
            k = r["rows"][c]
            ratio = f"{k['rps'] / e['rps']:.2f}x" if e["rps"] else "-"
            print(f"{name:<12}{c:>8}{k['rps']:>10.0f}"
                  f"{fmt_ms(k['p50']):>10}{fmt_ms(k['p99']):>10}"
                  f"{k['errors']:>8}  {ratio}")
        print(f"{'etcd':<12}{c:>8}{e['rps']:>10.0f}{fmt_ms(e['p50']):>10}"
              f"{fmt_ms(e['p99']):>10}{e['errors']:>8}")
    print(GOAL)
    cmd = " ".join(["/usr/bin/python3", "bench/cluster.py"] + sys.argv[1:])
    print(f"reproduce: KEYRAFT_BIN={binary} BENCH_SECONDS={SECS} {cmd}")
    if STRICT and any(r["fail"] for r in runs):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
