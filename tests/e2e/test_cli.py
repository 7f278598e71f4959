"""The CLI against a real agent: `keyraft var ...` and
`keyraft operator root keyring ...`, their outputs and exit codes."""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import BIN, check_output_clean, free_port

OK, ERROR, USAGE = 0, 1, 2


@pytest.fixture
def a(module_agent):
    return module_agent


def out(r):
    return r.stdout.decode()


def err(r):
    return r.stderr.decode()


def run(a, *args, rc=OK, **kw):
    r = a.cli(*args, **kw)
    assert r.returncode == rc, (args, r.returncode, r.stdout, r.stderr)
    return r


# ---- var put ----

def test_put_kv_default_json_when_redirected(a):
    r = run(a, "var", "put", "cli/put/kv", "user=admin", "pass=s3cret")
    v = json.loads(out(r))
    assert v["Path"] == "cli/put/kv"
    assert v["Namespace"] == "default"
    assert v["Items"] == {"user": "admin", "pass": "s3cret"}
    # Go's api.Variable field order.
    assert list(v)[:7] == ["Namespace", "Path", "CreateIndex",
                           "ModifyIndex", "CreateTime", "ModifyTime",
                           "Items"]
    assert a.get_var("cli/put/kv")["Items"] == {"user": "admin",
                                               "pass": "s3cret"}


def test_put_is_create_only_without_force(a):
    run(a, "var", "put", "cli/put/cas", "k=1")
    r = run(a, "var", "put", "cli/put/cas", "k=2", rc=ERROR)
    assert "check-and-set conflict" in err(r)
    assert a.get_var("cli/put/cas")["Items"] == {"k": "1"}


def test_put_check_index(a):
    v = json.loads(out(run(a, "var", "put", "cli/put/ci", "k=1")))
    idx = v["ModifyIndex"]
    r = run(a, "var", "put", "-check-index", str(idx + 100), "cli/put/ci",
            "k=wrong", rc=ERROR)
    assert f"-check-index={idx}" in err(r), err(r)
    assert a.get_var("cli/put/ci")["Items"] == {"k": "1"}
    r = run(a, "var", "put", f"-check-index={idx}", "cli/put/ci", "k=2")
    assert json.loads(out(r))["Items"] == {"k": "2"}
    # A now-stale index fails again.
    run(a, "var", "put", "-check-index", str(idx), "cli/put/ci", "k=3",
        rc=ERROR)
    # -check-index 0 means "must not exist".
    run(a, "var", "put", "-check-index", "0", "cli/put/ci", "k=4",
        rc=ERROR)
    assert a.get_var("cli/put/ci")["Items"] == {"k": "2"}


def test_put_force(a):
    run(a, "var", "put", "cli/put/force", "k=1")
    run(a, "var", "put", "-force", "cli/put/force", "k=2")
    run(a, "var", "put", "-force", "cli/put/force", "k=3")
    assert a.get_var("cli/put/force")["Items"] == {"k": "3"}


def test_put_value_from_file(a, tmp_path):
    f = tmp_path / "cert.pem"
    content = "-----BEGIN X-----\nline2\n\ttabbed \u00e9\n-----END X-----\n"
    f.write_text(content)
    run(a, "var", "put", "cli/put/file", f"cert=@{f}", "plain=x")
    assert a.get_var("cli/put/file")["Items"] == {"cert": content,
                                                 "plain": "x"}
    # A missing file is an error, and nothing is written.
    run(a, "var", "put", "cli/put/file2", f"cert=@{tmp_path}/nope",
        rc=ERROR)
    assert a.api("GET", "/v1/var/cli/put/file2").status == 404


def test_put_value_from_stdin(a):
    run(a, "var", "put", "cli/put/stdinval", "k=-", "o=1",
        input=b"from stdin\n")
    assert a.get_var("cli/put/stdinval")["Items"] == {"k": "from stdin\n",
                                                     "o": "1"}


def test_put_spec_from_stdin(a):
    spec = {"Path": "cli/put/spec", "Items": {"a": "1", "b": "2"}}
    r = run(a, "var", "put", "-", input=json.dumps(spec).encode())
    assert json.loads(out(r))["Items"] == {"a": "1", "b": "2"}
    assert a.get_var("cli/put/spec")["Items"] == {"a": "1", "b": "2"}


def test_put_spec_stdin_with_path_and_overrides(a):
    spec = {"Items": {"a": "1", "b": "2", "c": "3"}}
    run(a, "var", "put", "-in", "json", "cli/put/spec2", "-", "b=override",
        "c=", "d=4", input=json.dumps(spec).encode())
    # Arguments override the spec; an empty value removes the item.
    assert a.get_var("cli/put/spec2")["Items"] == {"a": "1", "b": "override",
                                                  "d": "4"}


def test_put_spec_file_modify_index_is_cas(a, tmp_path):
    v = a.put_var("cli/put/specidx", {"k": "1"})
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"Path": "cli/put/specidx",
                             "ModifyIndex": v["ModifyIndex"] + 5,
                             "Items": {"k": "stale"}}))
    run(a, "var", "put", f"@{f}", rc=ERROR)
    f.write_text(json.dumps({"Path": "cli/put/specidx",
                             "ModifyIndex": v["ModifyIndex"],
                             "Items": {"k": "2"}}))
    run(a, "var", "put", f"@{f}")
    assert a.get_var("cli/put/specidx")["Items"] == {"k": "2"}


def test_put_malformed_spec(a):
    r = run(a, "var", "put", "-", input=b'{"Path": "cli/put/bad", ',
            rc=ERROR)
    assert "specification" in err(r)
    run(a, "var", "put", "-", input=b'{"Path": "cli/put/bad", '
        b'"Items": {"k": 1}}', rc=ERROR)
    assert a.api("GET", "/v1/var/cli/put/bad").status == 404


def test_put_out_formats(a):
    r = run(a, "var", "put", "-out", "none", "cli/put/out", "k=v")
    m = re.fullmatch(r'Created variable "cli/put/out" with modify index '
                     r'(\d+)\n', out(r))
    assert m, out(r)
    assert int(m.group(1)) == a.get_var("cli/put/out")["ModifyIndex"]

    r = run(a, "var", "put", "-force", "-out", "table", "cli/put/out",
            "k=v2", "z=last")
    t = out(r)
    assert re.search(r"^Namespace\s+= default$", t, re.M), t
    assert re.search(r"^Path\s+= cli/put/out$", t, re.M), t
    idx = a.get_var("cli/put/out")["ModifyIndex"]
    assert re.search(rf"^Check Index\s+= {idx}$", t, re.M), t
    assert re.search(r"^Items$", t, re.M), t
    assert re.search(r"^k\s+= v2$", t, re.M), t
    assert re.search(r"^z\s+= last$", t, re.M), t

    r = run(a, "var", "put", "-force", "-out", "json", "cli/put/out", "k=v3")
    assert json.loads(out(r))["Items"] == {"k": "v3"}

    r = run(a, "var", "put", "-out", "yaml", "cli/put/out2", "k=v",
            rc=USAGE)
    assert "-out" in err(r)
    assert a.api("GET", "/v1/var/cli/put/out2").status == 404


def test_put_usage_errors(a):
    run(a, "var", "put", rc=USAGE)
    run(a, "var", "put", "cli/put/noitems", rc=USAGE)
    run(a, "var", "put", "-bogus", "cli/put/x", "k=v", rc=USAGE)
    run(a, "var", "put", "-check-index", "abc", "cli/put/x", "k=v",
        rc=USAGE)
    run(a, "var", "put", "-in", "hcl", "cli/put/x", "k=v", rc=USAGE)
    run(a, "var", "put", "-namespace", "*", "cli/put/x", "k=v", rc=USAGE)
    assert a.api("GET", "/v1/var/cli/put/x").status == 404


def test_put_server_rejection_is_error(a):
    r = run(a, "var", "put", "nomad/reserved", "k=v", rc=ERROR)
    assert "nomad" in err(r)
    r = run(a, "var", "put", "cli/bad.path", "k=v", rc=ERROR)
    assert "path" in err(r)


# ---- var get ----

def test_get_item_has_no_trailing_newline(a):
    a.put_var("cli/get/item", {"token": "abc123", "nl": "ends\n"})
    r = run(a, "var", "get", "-item", "token", "cli/get/item")
    assert r.stdout == b"abc123"
    r = run(a, "var", "get", "-item", "nl", "cli/get/item")
    assert r.stdout == b"ends\n"
    r = run(a, "var", "get", "-item", "missing", "cli/get/item", rc=ERROR)
    assert "missing" in err(r)
    assert r.stdout == b""


def test_get_formats(a):
    v = a.put_var("cli/get/fmt", {"b": "2", "a": "1"})
    got = json.loads(out(run(a, "var", "get", "cli/get/fmt")))
    assert got == v
    assert list(got["Items"]) == ["a", "b"], "items sorted as Go does"
    got = json.loads(out(run(a, "var", "get", "-out", "json",
                             "cli/get/fmt")))
    assert got == v
    t = out(run(a, "var", "get", "-out", "table", "cli/get/fmt"))
    assert re.search(r"^a\s+= 1$", t, re.M) and \
        re.search(r"^b\s+= 2$", t, re.M), t
    assert out(run(a, "var", "get", "-out", "none", "cli/get/fmt")) == ""
    run(a, "var", "get", "-out", "xml", "cli/get/fmt", rc=USAGE)


def test_get_missing_and_usage(a):
    r = run(a, "var", "get", "cli/get/never", rc=ERROR)
    assert "variable not found" in err(r)
    run(a, "var", "get", rc=USAGE)
    run(a, "var", "get", "one", "two", rc=USAGE)
    run(a, "var", "get", "-namespace", "*", "cli/get/fmt", rc=USAGE)


# ---- var list ----

def test_list(a):
    paths = [f"cli/list/{i:02d}" for i in range(7)]
    for p in paths:
        a.put_var(p, {"k": p})
    a.put_var("cli/listx", {"k": "outside"})

    got = json.loads(out(run(a, "var", "list", "cli/list/")))
    assert [v["Path"] for v in got] == paths
    assert all("Items" not in v for v in got)

    terse = out(run(a, "var", "list", "-out", "terse", "cli/list/"))
    assert terse.splitlines() == paths

    table = out(run(a, "var", "list", "-out", "table", "cli/list/"))
    lines = table.splitlines()
    assert re.match(r"Namespace\s+Path\s+Last Updated", lines[0]), table
    assert [ln.split()[1] for ln in lines[1:]] == paths

    empty = out(run(a, "var", "list", "-out", "table", "cli/none/"))
    assert "No matching variables found" in empty
    assert json.loads(out(run(a, "var", "list", "cli/none/"))) == []


def test_list_pagination(a):
    paths = [f"cli/page/{i:02d}" for i in range(5)]
    for p in paths:
        a.put_var(p, {"k": p})
    seen, token, pages = [], None, 0
    while True:
        args = ["var", "list", "-per-page", "2"]
        if token:
            args += ["-page-token", token]
        page = json.loads(out(run(a, *args, "cli/page/")))
        pages += 1
        seen += [v["Path"] for v in page["Data"]]
        token = page["QueryMeta"]["NextToken"]
        assert page["QueryMeta"]["LastIndex"] > 0
        if not token:
            break
        assert pages < 10
    assert seen == paths and pages == 3

    # In table form the token goes to stderr, keeping stdout clean.
    r = run(a, "var", "list", "-per-page", "2", "-out", "terse",
            "cli/page/")
    assert out(r).splitlines() == paths[:2]
    assert "default.cli/page/02" in err(r)


def test_list_namespaces(a):
    a.put_var("cli/ns/x", {"k": "1"}, "?namespace=cli-alpha")
    a.put_var("cli/ns/y", {"k": "1"}, "?namespace=cli-beta")
    got = json.loads(out(run(a, "var", "list", "-namespace", "cli-alpha",
                             "cli/ns/")))
    assert [(v["Namespace"], v["Path"]) for v in got] == \
        [("cli-alpha", "cli/ns/x")]
    got = json.loads(out(run(a, "var", "list", "-namespace", "*",
                             "cli/ns/")))
    assert sorted((v["Namespace"], v["Path"]) for v in got) == \
        [("cli-alpha", "cli/ns/x"), ("cli-beta", "cli/ns/y")]
    terse = out(run(a, "var", "list", "-namespace", "*", "-out", "terse",
                    "cli/ns/"))
    assert sorted(ln.split() for ln in terse.splitlines()) == \
        [["cli-alpha", "cli/ns/x"], ["cli-beta", "cli/ns/y"]]


# ---- var purge ----

def test_purge(a):
    a.put_var("cli/purge/x", {"k": "v"})
    r = run(a, "var", "purge", "cli/purge/x")
    assert out(r) == 'Successfully purged variable "cli/purge/x"!\n'
    assert a.api("GET", "/v1/var/cli/purge/x").status == 404
    run(a, "var", "get", "cli/purge/x", rc=ERROR)


def test_purge_check_index(a):
    v = a.put_var("cli/purge/cas", {"k": "v"})
    r = run(a, "var", "purge", "-check-index", str(v["ModifyIndex"] + 3),
            "cli/purge/cas", rc=ERROR)
    assert "check-and-set conflict" in err(r)
    assert a.get_var("cli/purge/cas")["Items"] == {"k": "v"}
    run(a, "var", "purge", "-check-index", str(v["ModifyIndex"]),
        "cli/purge/cas")
    assert a.api("GET", "/v1/var/cli/purge/cas").status == 404
    run(a, "var", "purge", rc=USAGE)
    run(a, "var", "purge", "-namespace", "*", "cli/purge/cas", rc=USAGE)


# ---- namespaces, addresses, environment ----

def test_namespace_flag_and_env(a):
    run(a, "var", "put", "-namespace", "cli-ns1", "cli/nsflag", "k=flag")
    run(a, "var", "put", "cli/nsenv", "k=env",
        env={"KEYRAFT_NAMESPACE": "cli-ns2"})
    # The flag beats the environment.
    run(a, "var", "put", "-namespace", "cli-ns1", "cli/nsboth", "k=both",
        env={"KEYRAFT_NAMESPACE": "cli-ns2"})
    assert a.get_var("cli/nsflag", "?namespace=cli-ns1")["Items"] == \
        {"k": "flag"}
    assert a.get_var("cli/nsenv", "?namespace=cli-ns2")["Items"] == \
        {"k": "env"}
    assert a.get_var("cli/nsboth", "?namespace=cli-ns1")["Items"] == \
        {"k": "both"}
    assert a.api("GET", "/v1/var/cli/nsboth?namespace=cli-ns2").status == 404
    r = run(a, "var", "get", "-item", "k", "cli/nsenv",
            env={"KEYRAFT_NAMESPACE": "cli-ns2"})
    assert r.stdout == b"env"


def test_address_flag_beats_env(a):
    dead = f"http://127.0.0.1:{free_port()}"
    a.put_var("cli/addr", {"k": "v"})
    r = run(a, "var", "get", "-address", a.addr, "-item", "k", "cli/addr",
            env={"KEYRAFT_ADDR": dead})
    assert r.stdout == b"v"
    r = run(a, "var", "get", "-address", dead, "-item", "k", "cli/addr",
            rc=ERROR)
    assert r.stdout == b""
    assert err(r).startswith("Error:"), err(r)
    # The environment alone is used when no flag is given...
    run(a, "var", "get", "cli/addr", env={"KEYRAFT_ADDR": dead}, rc=ERROR)
    # ...and an address without a scheme means http.
    hostport = a.addr.split("://", 1)[1]
    r = run(a, "var", "get", "-item", "k", "cli/addr",
            env={"KEYRAFT_ADDR": hostport})
    assert r.stdout == b"v"
    r = run(a, "operator", "root", "keyring", "list", "-address", a.addr,
            env={"KEYRAFT_ADDR": dead})
    assert "active" in out(r)


def test_bad_address_scheme(a):
    run(a, "var", "get", "-address", "ftp://127.0.0.1:1", "cli/addr",
        rc=ERROR)


# ---- exit codes, help ----

def test_top_level_exit_codes(a):
    assert a.cli().returncode == USAGE
    assert a.cli("nosuchcommand").returncode == USAGE
    assert a.cli("var", "bogus").returncode == USAGE
    r = run(a, "var", rc=USAGE)
    for sub in ("get", "list", "purge", "put"):
        assert sub in err(r)
    r = run(a, "-h")
    assert "Usage: keyraft" in out(r)
    for cmd in ("agent", "operator", "var", "version"):
        assert cmd in out(r)
    r = run(a, "version")
    assert re.match(r"keyraft v\d+\.\d+", out(r)), out(r)
    r = run(a, "operator", "root", "keyring", "-h")
    for sub in ("list", "remove", "rotate"):
        assert sub in out(r)


GENERAL_FLAGS = ["-address", "-namespace", "-token", "-region", "-ca-cert",
                 "-ca-path", "-client-cert", "-client-key",
                 "-tls-server-name"]
GENERAL_ENV = ["KEYRAFT_ADDR", "KEYRAFT_NAMESPACE", "KEYRAFT_TOKEN",
               "KEYRAFT_REGION", "KEYRAFT_CACERT", "KEYRAFT_CAPATH",
               "KEYRAFT_CLIENT_CERT", "KEYRAFT_CLIENT_KEY",
               "KEYRAFT_TLS_SERVER_NAME"]


@pytest.mark.parametrize("cmd,flags", [
    ("var put", ["-check-index", "-force", "-in", "-out"]),
    ("var get", ["-item", "-out"]),
    ("var list", ["-per-page", "-page-token", "-filter", "-out"]),
    ("var purge", ["-check-index"]),
    ("operator root keyring list", ["-verbose"]),
    ("operator root keyring rotate", ["-full", "-now", "-prepublish",
                                      "-verbose"]),
    ("operator root keyring remove", ["-force"]),
])
@pytest.mark.parametrize("helpflag", ["-h", "-help", "--help"])
def test_help_lists_flags_and_env(a, cmd, flags, helpflag):
    r = run(a, *cmd.split(), helpflag)
    text = out(r)
    assert text.startswith(f"Usage: keyraft {cmd} "), text
    for f in flags + GENERAL_FLAGS:
        assert re.search(rf"^\s+{re.escape(f)}\b", text, re.M), (f, text)
    assert "Environment Variables:" in text
    for e in GENERAL_ENV:
        assert e in text, (e, text)
    # Help goes to stdout; nothing is sent to a server.
    assert err(r) == ""


def test_usage_error_goes_to_stderr(a):
    r = run(a, "var", "get", "-nope", "x", rc=USAGE)
    assert out(r) == ""
    assert "flag provided but not defined: -nope" in err(r)
    assert "Usage: keyraft var get" in err(r)


# ---- operator root keyring (fresh agents: rotations are global) ----

def key_rows(text):
    lines = text.splitlines()
    assert re.match(r"^Key\s+State\s+Create Time\s+Publish Time$",
                    lines[0]), text
    return [ln.split() for ln in lines[1:]]


def test_keyring_list(agent):
    k = agent.active_key()
    rows = key_rows(out(run(agent, "operator", "root", "keyring", "list")))
    assert len(rows) == 1
    assert rows[0][0] == k["KeyID"][:8]
    assert rows[0][1] == "active"
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                            time.gmtime(k["CreateTime"] // 10**9))
    assert rows[0][2] == created
    assert len(rows[0]) == 3, "publish time is blank when 0"
    rows = key_rows(out(run(agent, "operator", "root", "keyring", "list",
                            "-verbose")))
    assert rows[0][0] == k["KeyID"]
    run(agent, "operator", "root", "keyring", "list", "extra", rc=USAGE)


def test_keyring_rotate_now(agent):
    old = agent.active_key()["KeyID"]
    r = run(agent, "operator", "root", "keyring", "rotate", "-now")
    rows = key_rows(out(r))
    assert len(rows) == 1 and rows[0][1] == "active"
    new = agent.active_key()["KeyID"]
    assert new != old and rows[0][0] == new[:8]
    st = {k["KeyID"]: k["State"] for k in agent.keys()}
    assert st == {old: "inactive", new: "active"}
    r = run(agent, "operator", "root", "keyring", "rotate", "-now",
            "-verbose")
    assert key_rows(out(r))[0][0] == agent.active_key()["KeyID"]


def test_keyring_rotate_prepublish(agent):
    active = agent.active_key()["KeyID"]
    before = time.time_ns()
    r = run(agent, "operator", "root", "keyring", "rotate", "-prepublish",
            "1h")
    after = time.time_ns()
    rows = key_rows(out(r))
    assert rows[0][1] == "prepublished"
    pre = [k for k in agent.keys() if k["State"] == "prepublished"]
    assert len(pre) == 1 and pre[0]["KeyID"][:8] == rows[0][0]
    hour = 3600 * 10**9
    assert before + hour <= pre[0]["PublishTime"] <= after + hour
    shown = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                          time.gmtime(pre[0]["PublishTime"] // 10**9))
    assert rows[0][3] == shown
    assert agent.active_key()["KeyID"] == active


def test_keyring_rotate_full(agent):
    """-full turns the old key rekeying; -wait returns once the rekey job
    has moved every Variable and the old key is inactive.  Without a
    terminal the progress is plain lines on stderr; stdout keeps only the
    key table."""
    old = agent.active_key()["KeyID"]
    for i in range(300):
        agent.put_var(f"cli/rekey/{i}", {"v": str(i)})
    r = run(agent, "operator", "root", "keyring", "rotate", "-full", "-now",
            "-wait")
    rows = key_rows(out(r))
    assert len(rows) == 1 and rows[0][1] == "active"
    assert "rekey: done" in err(r), err(r)
    st = {k["KeyID"]: k["State"] for k in agent.keys()}
    assert st[old] == "inactive"
    assert sorted(st.values()) == ["active", "inactive"]
    assert agent.get_var("cli/rekey/299")["Items"] == {"v": "299"}
    # -wait belongs to -full.
    r = run(agent, "operator", "root", "keyring", "rotate", "-now", "-wait",
            rc=USAGE)
    assert "-wait requires -full" in err(r)


def test_keyring_rotate_full_wait_draws_a_bar_on_a_terminal(agent):
    """With stderr on a terminal (a real pty here), -wait redraws one
    progress line in place with carriage returns and ends it at 100%."""
    import pty
    from concurrent.futures import ThreadPoolExecutor
    # Enough Variables that the rekey is still running at the first poll
    # (tens of batches), written from a few threads to keep the test short.
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: agent.put_var(f"cli/bar/{i}",
                                            {"v": "x" * 200}), range(6000)))
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEYRAFT_")}
    env["KEYRAFT_ADDR"] = agent.addr
    p = subprocess.Popen([BIN, "operator", "root", "keyring", "rotate",
                          "-full", "-now", "-wait"], stdout=subprocess.PIPE,
                         stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:     # EIO: the CLI closed the terminal
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    stdout = p.stdout.read().decode()
    p.stdout.close()
    assert p.wait(30) == 0, tty
    text = tty.decode()
    check_output_clean(text)
    assert "\r" in text and "100%" in text, repr(text)
    assert "rekey: done" in text, repr(text)
    # stdout, not a terminal, keeps only the key table.
    assert len(key_rows(stdout)) == 1 and "\r" not in stdout


def test_keyring_rotate_errors(agent):
    before = agent.keys()
    run(agent, "operator", "root", "keyring", "rotate", rc=USAGE)
    run(agent, "operator", "root", "keyring", "rotate", "-now",
        "-prepublish", "1h", rc=USAGE)
    run(agent, "operator", "root", "keyring", "rotate", "-prepublish",
        "soon", rc=USAGE)
    run(agent, "operator", "root", "keyring", "rotate", "-prepublish",
        "-1h", rc=USAGE)
    run(agent, "operator", "root", "keyring", "rotate", "-now", "extra",
        rc=USAGE)
    r = run(agent, "operator", "root", "keyring", "rotate", "-full",
            "-prepublish", "1h", rc=ERROR)
    assert "cannot be prepublished and full rotated" in err(r)
    assert agent.keys() == before


def shortest_unique_prefix(kid, ids):
    for n in range(1, len(kid) + 1):
        if sum(1 for i in ids if i.startswith(kid[:n])) == 1:
            return kid[:n]
    return kid


def test_keyring_remove_by_prefix(agent):
    old = agent.active_key()["KeyID"]
    agent.rotate()
    ids = [k["KeyID"] for k in agent.keys()]
    prefix = shortest_unique_prefix(old, ids)
    r = run(agent, "operator", "root", "keyring", "remove", prefix)
    assert out(r) == f"Removed encryption key {old}\n"
    assert old not in [k["KeyID"] for k in agent.keys()]
    # Removing it again: no key matches.
    r = run(agent, "operator", "root", "keyring", "remove", prefix,
            rc=ERROR)
    assert prefix in err(r)


def test_keyring_remove_full_id(agent):
    old = agent.active_key()["KeyID"]
    agent.rotate()
    r = run(agent, "operator", "root", "keyring", "remove", old)
    assert out(r) == f"Removed encryption key {old}\n"
    r = run(agent, "operator", "root", "keyring", "remove", old, rc=ERROR)
    assert "root key not found" in err(r)


def test_keyring_remove_ambiguous_prefix(agent):
    # Rotate until two keys share a first character (at most 17 keys).
    for _ in range(17):
        ids = [k["KeyID"] for k in agent.keys()]
        firsts = [i[0] for i in ids]
        dup = [c for c in set(firsts) if firsts.count(c) > 1]
        if dup:
            break
        agent.rotate()
    else:
        raise AssertionError("pigeonhole failed?")
    before = agent.keys()
    c = dup[0]
    r = run(agent, "operator", "root", "keyring", "remove", c, rc=ERROR)
    e = err(r)
    matching = [i for i in ids if i.startswith(c)]
    assert len(matching) >= 2
    for m in matching:
        assert m in e, (m, e)       # candidates listed with full IDs
    for other in set(ids) - set(matching):
        assert other not in e
    assert agent.keys() == before, "an ambiguous prefix deletes nothing"


def test_keyring_remove_refusals(agent):
    active = agent.active_key()["KeyID"]
    r = run(agent, "operator", "root", "keyring", "remove", active,
            rc=ERROR)
    assert "active root key cannot be deleted" in err(r)
    agent.put_var("cli/kr/pinned", {"k": "v"})
    agent.rotate()
    r = run(agent, "operator", "root", "keyring", "remove", active,
            rc=ERROR)
    assert "root key in use" in err(r)
    assert active in [k["KeyID"] for k in agent.keys()]
    r = run(agent, "operator", "root", "keyring", "remove", "-force",
            active)
    assert out(r) == f"Removed encryption key {active}\n"
    assert active not in [k["KeyID"] for k in agent.keys()]
    run(agent, "operator", "root", "keyring", "remove", rc=USAGE)
    run(agent, "operator", "root", "keyring", "remove", "a", "b", rc=USAGE)


def test_cli_unreachable_server_is_error(agent):
    dead = f"http://127.0.0.1:{free_port()}"
    for args in (["var", "get", "-address", dead, "x"],
                 ["var", "put", "-address", dead, "x", "k=v"],
                 ["var", "list", "-address", dead],
                 ["var", "purge", "-address", dead, "x"],
                 ["operator", "root", "keyring", "list", "-address", dead],
                 ["operator", "root", "keyring", "rotate", "-now",
                  "-address", dead]):
        r = agent.cli(*args)
        assert r.returncode == ERROR, (args, r)
        assert r.stderr.startswith(b"Error:"), r.stderr
        assert r.stdout == b""
    assert len(agent.keys()) == 1
