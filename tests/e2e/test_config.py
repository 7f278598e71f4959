"""Agent configuration: a bad file fails fast with `file:line: reason`,
a good one (and -dev) starts."""
import os
import re
import socket
import time

import pytest

from conftest import SLOW, free_port, run_agent_to_exit

BASE = '''\
data_dir  = "{data_dir}"
bind_addr = "127.0.0.1"
ports {{
  http = {http}
  rpc  = {rpc}
}}
'''


def write_config(tmp_path, body, name="agent.hcl", base=True):
    """Writes BASE (with ephemeral ports, so a config that wrongly starts
    cannot collide) followed by body; returns (path, text, http_port)."""
    http = free_port()
    text = body
    if base:
        text = BASE.format(data_dir=tmp_path / "data", http=http,
                           rpc=free_port()) + body
    path = tmp_path / name
    path.write_text(text)
    return str(path), text, http


def line_of(text, marker):
    """1-based line number of the first line containing marker."""
    for i, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return i
    raise AssertionError(f"{marker!r} not in config")


def assert_fails_at(path, line, *fragments, args=None):
    rc, out, err, secs = run_agent_to_exit(args or ["-config", path])
    assert rc is not None, f"agent did not exit; stderr:\n{err}"
    assert rc != 0, (rc, err)
    assert secs < 5 * SLOW, f"took {secs:.1f}s to reject the config"
    assert f"{path}:{line}:" in err, (path, line, err)
    for f in fragments:
        assert f in err, (f, err)
    return err


BAD = {
    "unknown_top_key": ('bogus_option = 1  # MARK\n', ["bogus_option"]),
    "unknown_server_key": ('server {\n  enabled = true\n'
                           '  bootstrap_expectt = 1  # MARK\n}\n',
                           ["bootstrap_expectt"]),
    "unknown_block": ('telemetry {  # MARK\n  x = 1\n}\n', ["telemetry"]),
    "wrong_type_bool": ('server {\n  enabled = "yes"  # MARK\n}\n',
                        ["server.enabled", "bool"]),
    "wrong_type_int": ('server {\n  bootstrap_expect = "one"  # MARK\n}\n',
                       ["bootstrap_expect"]),
    "wrong_type_string": ('region = 5  # MARK\n', ["region", "string"]),
    "bad_duration": ('server {\n'
                     '  root_key_rotation_threshold = "10 parsecs"  # MARK\n'
                     '}\n', ["root_key_rotation_threshold", "duration"]),
    "negative_duration": ('server {\n'
                          '  root_key_gc_threshold = "-1h"  # MARK\n}\n',
                          ["root_key_gc_threshold"]),
    "duration_as_number": ('server {\n'
                           '  root_key_gc_interval = 5  # MARK\n}\n',
                           ["root_key_gc_interval"]),
    "unknown_keyring_type": ('keyring "rot13" {  # MARK\n'
                             '  active = true\n}\n', ["rot13"]),
    "keyring_active_not_bool": ('keyring "aead" {\n'
                                '  active = "TOPSECRET-yes"  # MARK\n}\n',
                                ["active"]),
    "bad_log_level": ('log_level = "loud"  # MARK\n', ["log_level"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_file_and_line(tmp_path, case):
    body, fragments = BAD[case]
    # Blank lines first, so the line number cannot be right by accident.
    path, text, _ = write_config(tmp_path, "\n\n\n" + body)
    err = assert_fails_at(path, line_of(text, "MARK"), *fragments)
    assert "TOPSECRET" not in err, "config values must not be echoed"


def test_wrong_type_port(tmp_path):
    path = str(tmp_path / "agent.hcl")
    text = (f'data_dir = "{tmp_path}/data"\n\nports {{\n'
            f'  rpc  = {free_port()}\n  http = "abc"\n}}\n')
    open(path, "w").write(text)
    assert_fails_at(path, 5, "ports.http")


def test_port_out_of_range(tmp_path):
    path = str(tmp_path / "agent.hcl")
    text = (f'data_dir = "{tmp_path}/data"\nports {{\n'
            f'  rpc  = {free_port()}\n\n  http = 70000\n}}\n')
    open(path, "w").write(text)
    assert_fails_at(path, 5, "ports.http", "70000")


def test_two_active_keyrings(tmp_path):
    body = ('\nkeyring "aead" {\n  active = true\n}\n\n'
            'keyring "aead" {   # SECOND\n  name   = "backup"\n'
            '  active = true\n}\n')
    path, text, _ = write_config(tmp_path, body)
    first = line_of(text, 'keyring "aead" {')
    second = line_of(text, "SECOND")
    assert first < second
    err = assert_fails_at(path, second, "active")
    # The message also points at the other active keyring.
    assert f"{path}:{first}" in err, err


def test_two_active_keyrings_across_files(tmp_path):
    p1, t1, _ = write_config(tmp_path, 'keyring "aead" {\n'
                             '  active = true\n}\n', name="a.hcl")
    p2 = str(tmp_path / "b.hcl")
    open(p2, "w").write('# second file\n\nkeyring "aead" {\n'
                        '  name   = "other"\n  active = true\n}\n')
    err = assert_fails_at(p2, 3, args=["-config", p1, "-config", p2])
    first = line_of(t1, 'keyring "aead"')
    assert f"{p1}:{first}" in err, err


def test_duplicate_attribute(tmp_path):
    path, text, _ = write_config(tmp_path, 'region = "a"\n'
                                 'region = "b"  # MARK\n')
    assert_fails_at(path, line_of(text, "MARK"), "region")


def test_syntax_error(tmp_path):
    path, text, _ = write_config(tmp_path, '\n\nserver {\n'
                                 '  enabled = = true  # MARK\n}\n')
    assert_fails_at(path, line_of(text, "MARK"))


def test_json_config_error_line(tmp_path):
    path = str(tmp_path / "agent.json")
    open(path, "w").write(
        '{\n  "data_dir": "%s/data",\n  "server": {\n'
        '    "enabled": true,\n    "nope": 1\n  }\n}\n' % tmp_path)
    assert_fails_at(path, 5, "nope")


def test_error_in_second_config_file(tmp_path):
    p1, _, _ = write_config(tmp_path, "", name="1.hcl")
    p2 = str(tmp_path / "2.hcl")
    open(p2, "w").write('server {\n  enabled = true\n}\n\nwhat = 1\n')
    assert_fails_at(p2, 5, "what", args=["-config", p1, "-config", p2])


def test_config_directory_names_the_file(tmp_path):
    d = tmp_path / "conf.d"
    d.mkdir()
    write_config(d, "", name="00-base.hcl")
    (d / "10-bad.hcl").write_text('\nserver {\n  enabeld = true\n}\n')
    assert_fails_at(str(d / "10-bad.hcl"), 3, "enabeld",
                    args=["-config", str(d)])


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / "nope.hcl")
    rc, _, err, _ = run_agent_to_exit(["-config", missing])
    assert rc not in (None, 0)
    assert missing in err


def test_agent_usage_errors():
    rc, _, err, _ = run_agent_to_exit([])
    assert rc == 2, (rc, err)
    assert "-config" in err
    rc, _, err, _ = run_agent_to_exit(["-bogus"])
    assert rc == 2, (rc, err)


def test_good_config_with_explicit_keyring_starts(make_agent):
    a = make_agent(extra_hcl='''
server {
  root_key_rotation_threshold = "720h"
  root_key_gc_interval        = "10m"
  root_key_gc_threshold       = "1h"
}
keyring "aead" {
  active = true
}
''')
    a.put_var("cfg/ok", {"k": "v"})
    assert a.get_var("cfg/ok")["Items"] == {"k": "v"}


def test_dev_mode_with_port_override(make_agent, tmp_path):
    """-dev plus a file that moves the ports off the fixed 4656."""
    a = make_agent(name="dev", start=False)
    extra = tmp_path / "dev-extra.hcl"
    extra.write_text(f'ports {{\n  http = {a.http_port}\n'
                     f'  rpc  = {a.rpc_port}\n}}\n')
    a.start(args=["agent", "-dev", "-config", str(extra)])
    # Dev binds to loopback.
    a.put_var("dev/x", {"k": "v"})
    assert a.get_var("dev/x")["Items"] == {"k": "v"}
    assert a.active_key()["State"] == "active"
    m = re.search(r"data_dir (\S+)", a.log())
    assert m, a.log()
    data_dir = m.group(1)
    assert os.path.isdir(data_dir)
    assert not data_dir.startswith(str(a.dir)), "dev picks its own dir"
    a.stop()
    # Dev mode's temporary data dir goes away with the agent.
    deadline = time.time() + 5
    while os.path.exists(data_dir) and time.time() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(data_dir), data_dir


def test_bad_config_does_not_listen(tmp_path):
    path, text, http = write_config(tmp_path, "nonsense = true\n")
    rc, _, _, _ = run_agent_to_exit(["-config", path])
    assert rc not in (None, 0)
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", http)) != 0


def test_no_active_keyring_is_refused(tmp_path):
    """Blocks exist but none is active: no new key could ever be wrapped,
    so the agent refuses the config instead of waiting for start_timeout."""
    path, text, _ = write_config(
        tmp_path, 'keyring "aead" {\n  active = false\n}\n')
    rc, out, err, secs = run_agent_to_exit(["-config", path])
    assert rc not in (None, 0), (rc, err)
    assert secs < 5 * SLOW
    assert "no keyring block is active" in err, err
