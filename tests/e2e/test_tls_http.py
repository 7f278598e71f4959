"""HTTPS on the HTTP port: certificates made by `keyraft tls`, checked
with curl, openssl s_client and our own CLI; client certificates when
verify_https_client is on; HTTP/2 only when asked for."""
import os
import subprocess

import pytest

from conftest import BIN, SLOW


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    for args in (["tls", "ca", "create"], ["tls", "cert", "create", "-server"],
                 ["tls", "cert", "create", "-cli"]):
        subprocess.run([BIN, *args], cwd=d, check=True, capture_output=True)
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run([BIN, "tls", "ca", "create"], cwd=other, check=True,
                   capture_output=True)
    return {"dir": str(d), "ca": str(d / "keyraft-agent-ca.pem"),
            "cert": str(d / "global-server-keyraft.pem"),
            "key": str(d / "global-server-keyraft-key.pem"),
            "cli_cert": str(d / "global-cli-keyraft.pem"),
            "cli_key": str(d / "global-cli-keyraft-key.pem"),
            "other_ca": str(other / "keyraft-agent-ca.pem")}


def tls_block(pki, extra=""):
    return (f'tls {{\n  http = true\n  ca_file = "{pki["ca"]}"\n'
            f'  cert_file = "{pki["cert"]}"\n  key_file = "{pki["key"]}"\n'
            f'{extra}}}\n')


def https_agent(make_agent, pki, extra=""):
    a = make_agent(tls_block(pki, extra), start=False)
    a.scheme = "https"
    a.start(wait=False)
    # Health over TLS, checked with the right CA.
    for _ in range(int(200 * SLOW)):
        r = curl(a, "-o", "/dev/null", "-w", "%{http_code}",
                 "--cacert", pki["ca"], *client_cert(pki, extra))
        if r.stdout == "200":
            return a
        subprocess.run(["sleep", "0.1"])
    raise AssertionError(a.log())


def client_cert(pki, extra):
    if "verify_https_client" in extra:
        return ["--cert", pki["cli_cert"], "--key", pki["cli_key"]]
    return []


def curl(a, *args, path="/v1/agent/health"):
    return subprocess.run(
        ["curl", "-s", *args, f"https://127.0.0.1:{a.http_port}{path}"],
        capture_output=True, text=True, timeout=20)


def test_https_with_the_right_ca_only(make_agent, pki):
    a = https_agent(make_agent, pki)
    ok = curl(a, "--cacert", pki["ca"])
    assert ok.returncode == 0 and '"ok":true' in ok.stdout, ok
    # No CA, or another CA: the handshake fails (curl 60: bad peer cert).
    assert curl(a).returncode == 60
    assert curl(a, "--cacert", pki["other_ca"]).returncode == 60
    # Plain HTTP on the TLS port is not answered as HTTP.
    plain = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
         f"http://127.0.0.1:{a.http_port}/v1/agent/health"],
        capture_output=True, text=True, timeout=20)
    assert plain.stdout != "200"
    # openssl s_client verifies the chain and the server name.
    s = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{a.http_port}",
         "-CAfile", pki["ca"], "-verify_return_error",
         "-verify_hostname", "server.global.keyraft", "-brief"],
        input="", capture_output=True, text=True, timeout=20)
    assert s.returncode == 0, s.stderr
    assert "Verification: OK" in s.stderr, s.stderr
    # By default only HTTP/1.1 is offered.
    v = curl(a, "--cacert", pki["ca"], "--http2", "-o", "/dev/null", "-w",
             "%{http_version}")
    assert v.stdout == "1.1", v


def test_cli_over_tls(make_agent, pki):
    a = https_agent(make_agent, pki)
    env = {"KEYRAFT_ADDR": f"https://127.0.0.1:{a.http_port}",
           "KEYRAFT_CACERT": pki["ca"]}
    r = a.cli("var", "put", "-out", "none", "tls/x", "k=v", env=env)
    assert r.returncode == 0, r
    r = a.cli("var", "get", "-item", "k", "tls/x", env=env)
    assert r.returncode == 0 and r.stdout == b"v", r
    # Without the CA the CLI refuses the server.
    r = a.cli("var", "get", "tls/x", env={"KEYRAFT_ADDR": env["KEYRAFT_ADDR"]})
    assert r.returncode == 1, r


def test_client_certificate_required(make_agent, pki):
    a = https_agent(make_agent, pki, "  verify_https_client = true\n")
    no_cert = curl(a, "--cacert", pki["ca"])
    assert no_cert.returncode != 0 and '"ok"' not in no_cert.stdout
    ok = curl(a, "--cacert", pki["ca"], "--cert", pki["cli_cert"],
              "--key", pki["cli_key"])
    assert ok.returncode == 0 and '"ok":true' in ok.stdout, ok


def test_http2_is_opt_in(make_agent, pki):
    a = https_agent(make_agent, pki, "  http2 = true\n")
    v = curl(a, "--cacert", pki["ca"], "--http2", "-o", "/dev/null", "-w",
             "%{http_version}")
    assert v.stdout == "2", v


def test_snapshot_save_and_restore_over_https(make_agent, pki, tmp_path):
    """The snapshot upload path sits under TLS like h2o does: a save and a
    restore over HTTPS with the CLI, a body over 1 MiB included, and a
    plain-HTTP request to the HTTPS port is still refused."""
    a = https_agent(make_agent, pki)
    env = {"KEYRAFT_ADDR": f"https://127.0.0.1:{a.http_port}",
           "KEYRAFT_CACERT": pki["ca"]}
    for i in range(30):
        r = a.cli("var", "put", f"big/{i}", f"v={os.urandom(24000).hex()}",
                  env=env)
        assert r.returncode == 0, r.stderr
    snap = str(tmp_path / "s.snap")
    r = a.cli("operator", "snapshot", "save", snap, env=env)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(snap) > 1 << 20
    r = a.cli("var", "purge", "big/3", env=env)
    assert r.returncode == 0, r.stderr
    r = a.cli("operator", "snapshot", "restore", snap, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Snapshot Restored\n"
    r = a.cli("var", "get", "big/3", env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "-X", "PUT", "--data-binary", "@" + snap,
                        f"http://127.0.0.1:{a.http_port}/v1/operator/snapshot"],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == "000"
