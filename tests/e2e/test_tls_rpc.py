"""TLS on the RPC port: raft, forwarded requests and membership calls
all travel encrypted between servers that present certificates from the
cluster's CA, for server.<region>.keyraft when verify_server_hostname is
on.  A capture of loopback traffic proves no Variable plaintext crosses
the wire; the same capture of a plain cluster finds it (the scan works)."""
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BIN, SANITIZED, SLOW, cluster_leader

MARKER = "plaintext-marker-7f3a91"


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    for args in (["tls", "ca", "create"],
                 ["tls", "cert", "create", "-server", "-region", "east"],
                 ["tls", "cert", "create", "-server", "-region", "west"],
                 ["tls", "cert", "create", "-client", "-region", "east"]):
        subprocess.run([BIN, *args], cwd=d, check=True, capture_output=True)
    other = tmp_path / "other"
    other.mkdir()
    for args in (["tls", "ca", "create"],
                 ["tls", "cert", "create", "-server", "-region", "east"]):
        subprocess.run([BIN, *args], cwd=other, check=True,
                       capture_output=True)
    return {"ca": str(d / "keyraft-agent-ca.pem"),
            "east": (str(d / "east-server-keyraft.pem"),
                     str(d / "east-server-keyraft-key.pem")),
            "west": (str(d / "west-server-keyraft.pem"),
                     str(d / "west-server-keyraft-key.pem")),
            "client": (str(d / "east-client-keyraft.pem"),
                       str(d / "east-client-keyraft-key.pem")),
            "foreign": (str(other / "east-server-keyraft.pem"),
                        str(other / "east-server-keyraft-key.pem"))}


def tls_hcl(pki):
    cert, key = pki["east"]
    return (f'region = "east"\ntls {{\n  rpc = true\n'
            f'  ca_file = "{pki["ca"]}"\n  cert_file = "{cert}"\n'
            f'  key_file = "{key}"\n  verify_server_hostname = true\n}}\n')


def status_call(pki, address, cert_key):
    """A STATUS membership call over TLS; the answer's first byte, or the
    error that ended the connection."""
    host, port = address.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"])
    ctx.check_hostname = False
    ctx.load_cert_chain(*cert_key)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        try:
            with ctx.wrap_socket(s, server_hostname="server.east.keyraft") as t:
                t.sendall(b"KRPC\x01\x03" + struct.pack("<I", 1) + b"\x01")
                return t.recv(1)
        except (ssl.SSLError, ConnectionError, socket.timeout, OSError) as e:
            return e


def capture(ports, path):
    expr = " or ".join(f"port {p}" for p in ports)
    p = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "0", "-w", path,
                          expr], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    # Give tcpdump time to open the device; the assertions below fail
    # loudly ("nothing captured") if it was not ready.
    time.sleep(2)
    return p


def stop_capture(p):
    p.send_signal(signal.SIGINT)
    p.wait(10)


def forwarded_writes(agents):
    leader = cluster_leader(agents)
    followers = [a for a in agents if a is not leader]
    # Writes spread over a few seconds, so a capture that started late
    # still sees forwarded requests.
    for i in range(5):
        for f in followers:
            r = f.api("PUT", f"/v1/var/wire/{i}",
                      {"Items": {"v": f"{MARKER}-{i}"}})
            assert r.status == 200, r
        time.sleep(0.6)
    for a in agents:
        r = a.api("GET", "/v1/var/wire/4")
        assert r.json()["Items"] == {"v": f"{MARKER}-4"}


# The captures check traffic, not memory: they run in the normal pass;
# under sanitizers the agents are too slow for their timing.
needs_tcpdump = pytest.mark.skipif(
    shutil.which("tcpdump") is None or os.geteuid() != 0 or SANITIZED,
    reason="needs tcpdump as root, and runs in the non-sanitized pass")


@needs_tcpdump
def test_rpc_traffic_is_encrypted(make_cluster, tmp_path, pki):
    agents = make_cluster(3, tls_hcl(pki))
    pcap = str(tmp_path / "tls.pcap")
    cap = capture([a.rpc_port for a in agents], pcap)
    try:
        forwarded_writes(agents)
    finally:
        stop_capture(cap)
    data = open(pcap, "rb").read()
    assert len(data) > 2000, "nothing captured"
    assert MARKER.encode() not in data


@needs_tcpdump
def test_scan_finds_plaintext_without_tls(make_cluster, tmp_path):
    """The control: forwarded requests over a plain RPC port carry the
    value, so the capture above would have found a leak."""
    agents = make_cluster(3)
    pcap = str(tmp_path / "plain.pcap")
    cap = capture([a.rpc_port for a in agents], pcap)
    try:
        forwarded_writes(agents)
    finally:
        stop_capture(cap)
    assert MARKER.encode() in open(pcap, "rb").read()


def test_only_this_regions_servers_from_this_ca(make_cluster, pki):
    agents = make_cluster(3, tls_hcl(pki))
    addr = f"127.0.0.1:{agents[0].rpc_port}"
    assert status_call(pki, addr, pki["east"]) == b"\x00"
    # A server certificate for another region (it also names
    # server.global.keyraft, as Nomad's do) is refused.
    assert not isinstance(status_call(pki, addr, pki["west"]), bytes) or \
        status_call(pki, addr, pki["west"]) == b""
    # A certificate from another CA is refused.
    r = status_call(pki, addr, pki["foreign"])
    assert not isinstance(r, bytes) or r == b""
    # So is this CA's client certificate (client.east.keyraft): only a
    # server may send the preamble that names a raft ID and address.
    r = status_call(pki, addr, pki["client"])
    assert not isinstance(r, bytes) or r == b""
    # A client that does not speak TLS is refused.
    with socket.create_connection(("127.0.0.1", agents[0].rpc_port),
                                  timeout=5) as s:
        s.sendall(b"KRPC\x01\x03\x01\x00\x00\x00\x01")
        try:
            assert s.recv(5) == b""
        except ConnectionError:
            pass


def test_rpc_tls_needs_a_ca(make_agent, pki):
    cert, key = pki["east"]
    a = make_agent(f'tls {{\n  rpc = true\n  cert_file = "{cert}"\n'
                   f'  key_file = "{key}"\n}}\n', start=False)
    r = subprocess.run([BIN, "agent", "-config", a.config_path],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 1
    assert "tls.rpc needs tls.ca_file" in r.stderr


def raft_dial(pki, target, source_ip, node_id, claimed):
    """Opens a RAFT connection to target from source_ip over TLS with a
    valid server certificate, naming node_id at address claimed.  Returns
    "refused" (a non-zero status byte or no answer), "closed" (accepted,
    then closed by the server) or "open" (handed to raft, which waits for
    a message)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"])
    ctx.check_hostname = False
    ctx.load_cert_chain(*pki["east"])
    hdr = (struct.pack("<Q", node_id) + struct.pack("<I", len(claimed)) +
           claimed.encode())
    with socket.create_connection(target, timeout=5 * SLOW,
                                  source_address=(source_ip, 0)) as s:
        with ctx.wrap_socket(s, server_hostname="server.east.keyraft") as t:
            t.sendall(b"KRPC\x01\x01" + struct.pack("<I", len(hdr)) + hdr)
            try:
                if t.recv(1) != b"\x00":
                    return "refused"
            except (ssl.SSLError, ConnectionError):
                return "refused"
            t.settimeout(1.5)
            try:
                return "closed" if t.recv(1) == b"" else "open"
            except socket.timeout:
                return "open"
            except (ssl.SSLError, ConnectionError):
                return "closed"


def test_raft_identity_comes_from_the_connection(make_cluster, pki):
    """A raft connection's claimed address must be the IP it comes from,
    and its claimed ID must be the one the configuration has at that
    address, even for a peer holding a valid server certificate."""
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    agents = make_cluster(3, tls_hcl(pki), hosts=hosts)
    leader = cluster_leader(agents)
    r = leader.api("GET", "/v1/operator/raft/configuration")
    assert r.status == 200, r
    ids = {s["Address"]: int(s["ID"]) for s in r.json()["Servers"]}
    a0, a1, a2 = (f"{a.host}:{a.rpc_port}" for a in agents)
    target = (agents[0].host, agents[0].rpc_port)
    # The real identity of server 1, from server 1's IP: raft gets it.
    assert raft_dial(pki, target, hosts[1], ids[a1], a1) == "open"
    # The same claim from another IP is refused before raft sees it.
    assert raft_dial(pki, target, "127.0.0.9", ids[a1], a1) == "refused"
    # Server 2's ID claimed at server 1's address (and IP): refused by
    # the configuration check.
    assert raft_dial(pki, target, hosts[1], ids[a2], a1) == "closed"
    log = agents[0].log()
    assert ("refused a raft connection from 127.0.0.9 that names the "
            f"address {a1}") in log
    assert (f"refused a raft connection that claims node {ids[a2]} at {a1}"
            in log)
    # The cluster itself is unharmed: a write reaches every server.
    agents[2].put_var("bound/after", {"k": "v"})
    for a in agents:
        assert a.get_var("bound/after")["Items"] == {"k": "v"}


def test_large_values_cross_the_tls_pump_intact(make_cluster, pki):
    """Values near the 64 KiB Items limit and responses listing them
    cross the TLS pump in many records per write, forwarded from a
    follower and replicated to every server, byte for byte."""
    agents = make_cluster(3, tls_hcl(pki))
    leader = cluster_leader(agents)
    follower = next(a for a in agents if a is not leader)
    # Distinct contents per Variable and position, so a chunk delivered
    # twice or out of order is caught.
    want = {f"big/{i}": {"v": "".join(f"{i:02d}{j:06d}" for j in range(6000))}
            for i in range(24)}
    # Written at once, so the leader batches several into one raft entry
    # (hundreds of KiB: more than one 64 KiB write of the pump).
    with ThreadPoolExecutor(12) as ex:
        list(ex.map(lambda kv: follower.put_var(*kv), want.items()))
    for a in agents:
        for path, items in want.items():
            # Consistent reads: forwarded from followers, so each answer
            # of about 48 KiB comes back through the pump too.
            assert a.get_var(path)["Items"] == items
            assert a.get_var(path, "?stale")["Items"] == items
