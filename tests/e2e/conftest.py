"""Fixtures for end-to-end tests: real keyraft processes on ephemeral
loopback ports, each with its own temp data dir, stopped by PID.

Every agent's stderr is kept in its directory. When an agent stops, the
fixture fails the test if the log holds a sanitizer report, so the same
suite doubles as the ASan/UBSan run (KEYRAFT_SANITIZED=1).
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("KEYRAFT_BIN", os.path.join(ROOT, "build", "keyraft"))
SANITIZED = os.environ.get("KEYRAFT_SANITIZED") == "1"
# Sanitized builds run several times slower.
SLOW = 4 if SANITIZED else 1
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                     "BUG at")
UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

_live_pids = set()


_handed_out = set()


def free_port():
    """An unused loopback port, never one this run handed out before: the
    kernel may give a just-released port again, and two agents (or an
    agent's HTTP and RPC ports) must not collide."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


def http(method, url, body=None, headers=None, timeout=10):
    """One HTTP request; returns a Response for any status."""
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout * SLOW) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


class Agent:
    """A keyraft server process with its own config, data dir and ports."""

    def __init__(self, workdir, extra_hcl="", name="server",
                 host="127.0.0.1"):
        self.host = host    # bind_addr: any 127.0.0.0/8 address works
        self.dir = os.path.join(str(workdir), name)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, "data")
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.config_path = os.path.join(self.dir, "agent.hcl")
        with open(self.config_path, "w") as f:
            f.write(f'''
data_dir  = "{self.data_dir}"
bind_addr = "{host}"
log_level = "debug"
ports {{
  http = {self.http_port}
  rpc  = {self.rpc_port}
}}
server {{
  enabled          = true
  bootstrap_expect = 1
}}
{extra_hcl}
''')
        self.log_path = os.path.join(self.dir, "agent.log")
        self.proc = None

    @property
    def addr(self):
        return f"http://{self.host}:{self.http_port}"

    def url(self, path):
        return self.addr + path

    def start(self, wait=True, timeout=20, args=None):
        """Starts `keyraft agent -config <this agent's file>`, or
        `keyraft ARGS` when args is given (e.g. a -dev agent)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, *(args or ["agent", "-config", self.config_path])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        _live_pids.add(self.proc.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = http("GET", self.url("/v1/agent/health"), timeout=1)
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"agent not ready in {timeout}s:\n{self.log()}")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def check_log_clean(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, f"{marker} in agent log:\n{text}"

    def stop(self, timeout=20):
        """SIGTERM and wait: a clean stop must exit 0 with a clean log."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout * SLOW)
        _live_pids.discard(self.proc.pid)
        self.check_log_clean()
        assert rc == 0, f"agent exited {rc} on SIGTERM:\n{self.log()}"
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        _live_pids.discard(self.proc.pid)
        self.check_log_clean()

    def api(self, method, path, body=None, **kw):
        return http(method, self.url(path), body, **kw)

    # Conveniences over api() for the common calls; they assert success.

    def keys(self):
        """The key list (GET /v1/operator/keyring/keys), as dicts."""
        r = self.api("GET", "/v1/operator/keyring/keys")
        assert r.status == 200, r
        return r.json()

    def active_key(self):
        act = [k for k in self.keys() if k["State"] == "active"]
        assert len(act) == 1, act
        return act[0]

    def rotate(self, query=""):
        r = self.api("PUT", "/v1/operator/keyring/rotate" + query)
        assert r.status == 200, r
        return r.json()["Key"]

    def put_var(self, path, items, query=""):
        r = self.api("PUT", f"/v1/var/{path}{query}", {"Items": items})
        assert r.status == 200, r
        return r.json()

    def get_var(self, path, query=""):
        r = self.api("GET", f"/v1/var/{path}{query}")
        assert r.status == 200, r
        return r.json()

    def cli(self, *args, input=None, env=None, check=False):
        # Only the variables a test sets: none inherited from the caller.
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("KEYRAFT_")}
        e["KEYRAFT_ADDR"] = self.addr
        e.update(env or {})
        r = subprocess.run([BIN, *args], input=input, capture_output=True,
                           env=e, timeout=30 * SLOW)
        check_output_clean(r.stderr)
        if check:
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        return r


def check_output_clean(stderr):
    """Fails on a sanitizer report in a CLI process's stderr."""
    text = stderr.decode("utf-8", "replace") if isinstance(
        stderr, bytes) else stderr
    for marker in SANITIZER_MARKERS:
        assert marker not in text, f"{marker} in CLI stderr:\n{text}"


def run_agent_to_exit(args, timeout=10):
    """Runs `keyraft agent ARGS` expecting it to exit by itself (a bad
    configuration).  Returns (returncode, stdout, stderr, seconds); an agent
    still running after the timeout is killed by PID and reported as
    returncode None."""
    start = time.time()
    p = subprocess.Popen([BIN, "agent", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    _live_pids.add(p.pid)
    try:
        out, err = p.communicate(timeout=timeout * SLOW)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        rc = None
    _live_pids.discard(p.pid)
    err = err.decode("utf-8", "replace")
    check_output_clean(err)
    return rc, out.decode("utf-8", "replace"), err, time.time() - start


@pytest.fixture
def make_agent(tmp_path):
    """Factory: make_agent(extra_hcl="", name="server", start=True)."""
    agents = []

    def make(extra_hcl="", name="server", start=True, host="127.0.0.1"):
        a = Agent(tmp_path, extra_hcl, name, host)
        agents.append(a)
        if start:
            a.start()
        return a

    yield make
    for a in agents:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()


@pytest.fixture
def agent(make_agent):
    return make_agent()


def cluster_leader(agents, timeout=15):
    """The agent that every running agent names as leader."""
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        live = [a for a in agents if a.proc and a.proc.poll() is None]
        names = set()
        for a in live:
            try:
                names.add(a.api("GET", "/v1/status/leader", timeout=2).json())
            except (OSError, ValueError):
                names.add(None)
        last = names
        if len(names) == 1 and "" not in names and None not in names:
            addr = names.pop()
            for a in live:
                if addr.endswith(f":{a.rpc_port}"):
                    return a
        time.sleep(0.1)
    raise AssertionError(f"no agreed leader; saw {last}")


@pytest.fixture
def make_cluster(make_agent):
    """Factory: make_cluster(n, extra_hcl="", hosts=None) starts n servers
    that find each other through server_join and waits until all are
    healthy.  hosts[i], when given, is server i's bind_addr."""

    def make(n, extra_hcl="", hosts=None):
        hosts = hosts or ["127.0.0.1"] * n
        agents = [make_agent(name=f"s{i}", start=False, host=hosts[i])
                  for i in range(n)]
        join = ", ".join(f'"{a.host}:{a.rpc_port}"' for a in agents)
        for a in agents:
            with open(a.config_path, "a") as f:
                f.write(f"""
server {{
  bootstrap_expect = {n}
  server_join {{
    retry_join     = [{join}]
    retry_interval = "1s"
  }}
}}
{extra_hcl}
""")
        for a in agents:
            a.start(wait=False)
        for a in agents:
            a.wait_ready(timeout=30)
        cluster_leader(agents)
        return agents

    return make


@pytest.fixture(scope="module")
def module_agent(tmp_path_factory):
    """One agent shared by a module's tests that do not interfere."""
    a = Agent(tmp_path_factory.mktemp("module"))
    a.start()
    yield a
    if a.proc is not None and a.proc.poll() is None:
        a.stop()


def pytest_sessionfinish(session, exitstatus):
    # Anything a failing test left running is stopped by PID.
    for pid in list(_live_pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
