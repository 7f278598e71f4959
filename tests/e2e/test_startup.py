"""Startup is bounded by server.start_timeout, and a server that cannot
decrypt a key says which key and why (Nomad #25803 made startup hang; we
exit with a clear error instead), and the agent raises its own
descriptor limit at start."""
import re
import resource
import time

import pytest
from conftest import SLOW


def write_config(agent, extra):
    with open(agent.config_path) as f:
        base = f.read()
    # Drop whatever keyring blocks and start_timeout the test set before.
    base = re.sub(r'(?ms)^# -- test extra --.*', '', base)
    with open(agent.config_path, "w") as f:
        f.write(base + "# -- test extra --\n" + extra)


def test_missing_provider_fails_startup_naming_the_key(make_agent):
    a = make_agent()
    r = a.api("PUT", "/v1/var/app/db", {"Items": {"password": "s3cret"}})
    assert r.status == 200, r
    key_id = a.api("GET", "/v1/operator/keyring/keys").json()[0]["KeyID"]
    a.stop()

    # The operator replaced the aead block with a differently named one:
    # the stored key was wrapped by provider "aead", which is now gone.
    write_config(a, 'keyring "aead" {\n  name = "other"\n  active = true\n}\n'
                    'server {\n  start_timeout = "2s"\n}\n')
    t0 = time.time()
    a.start(wait=False)
    rc = a.proc.wait(30 * SLOW)
    elapsed = time.time() - t0
    log = a.log()
    assert rc != 0
    assert elapsed < 15 * SLOW, elapsed
    assert "keyring is not ready - waiting for keys" in log
    assert key_id in log.split("waiting for keys")[-1]
    assert 'no such KMS provider "aead" configured' in log

    # Put the block back (inactive is enough to decrypt): it starts, and
    # the Variable written before is intact.
    write_config(a, 'keyring "aead" {\n  active = false\n}\n'
                    'keyring "aead" {\n  name = "other"\n  active = true\n}\n')
    a.start()
    r = a.api("GET", "/v1/var/app/db")
    assert r.status == 200, r
    assert r.json()["Items"] == {"password": "s3cret"}
    # New keys are wrapped by the active block only.
    r = a.api("PUT", "/v1/operator/keyring/rotate")
    assert r.status == 200, r
    a.stop()


def test_agent_raises_its_descriptor_limit(make_agent):
    """The agent's soft RLIMIT_NOFILE goes up to the hard limit at start,
    as a Go server's does (it holds removed raft files' descriptors while
    their blocks are freed, besides its connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256
    if hard != resource.RLIM_INFINITY and hard <= low:
        pytest.skip(f"hard RLIMIT_NOFILE {hard}: nothing to raise")
    a = make_agent(start=False)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        a.start()           # inherits the low soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with open(f"/proc/{a.proc.pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    got_soft, got_hard = line.split()[3:5]
    want = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert (got_soft, got_hard) == (want, want), line
