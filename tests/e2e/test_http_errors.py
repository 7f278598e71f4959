"""Bad requests get the right status and a plain-text reason."""
import http.client
import json
import re

import pytest


@pytest.fixture
def a(module_agent):
    return module_agent


def put(a, path, body, query=""):
    return a.api("PUT", f"/v1/var/{path}{query}", body)


def assert_error(r, status, *fragments):
    assert r.status == status, r
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain"), (ctype, r)
    for f in fragments:
        assert f in r.text, (f, r.text)


def test_malformed_json_reports_position(a):
    # The stray comma is the 20th character: column 20 of line 1.
    r = put(a, "err/x", '{"Items":{"a":"b"},}')
    assert_error(r, 400)
    assert re.search(r"line 1\b", r.text), r.text
    assert re.search(r"column 20\b", r.text), r.text
    r = put(a, "err/x", '{\n  "Items": {\n    "a": "b"\n  ]\n}')
    assert_error(r, 400)
    assert re.search(r"line 4\b", r.text), r.text
    r = put(a, "err/x", '{"Items": {"a": "b"}')  # truncated
    assert_error(r, 400)
    assert a.api("GET", "/v1/var/err/x").status == 404


@pytest.mark.parametrize("body", [
    '{"Items":{"a":"1","a":"2"}}',
    '{"Items":{"a":"1"},"Items":{"b":"2"}}',
    '{"Path":"x","Path":"y","Items":{"a":"1"}}',
])
def test_duplicate_json_keys(a, body):
    assert_error(put(a, "err/dup", body), 400, "duplicate")
    assert a.api("GET", "/v1/var/err/dup").status == 404


@pytest.mark.parametrize("body", [
    {},
    {"Path": "err/noitems"},
    {"Items": {}},
    {"Items": None},
    {"Items": ["a", "b"]},
    {"Items": "a=b"},
])
def test_missing_or_empty_items(a, body):
    assert_error(put(a, "err/noitems", body), 400, "Items")


def test_empty_body_and_non_object_body(a):
    assert_error(a.api("PUT", "/v1/var/err/empty", b""), 400)
    assert_error(put(a, "err/empty", "[1,2]"), 400)
    assert_error(put(a, "err/empty", '"str"'), 400)


@pytest.mark.parametrize("value", [1, 1.5, True, None, {"x": "y"}, ["y"]])
def test_non_string_item(a, value):
    r = put(a, "err/nonstr", {"Items": {"good": "v", "bad": value}})
    assert_error(r, 400, "bad")
    assert a.api("GET", "/v1/var/err/nonstr").status == 404


def test_items_over_64k(a):
    # Keys count towards the limit too: 65535 bytes of value + a 2-byte key.
    r = put(a, "err/big", {"Items": {"kk": "x" * 65535}})
    assert_error(r, 400, "64")
    items = {f"k{i:04d}": "y" * 100 for i in range(700)}  # many small items
    assert_error(put(a, "err/big", {"Items": items}), 400)
    assert a.api("GET", "/v1/var/err/big").status == 404


@pytest.mark.parametrize("path", [
    "a.b", "a%20b", "a%3Ab", "caf%C3%A9", "a*b", "a$b", "a%2Cb",
    "x" * 129,
])
def test_invalid_path(a, path):
    assert_error(put(a, path, {"Items": {"k": "v"}}), 400, "path")
    assert a.api("GET", f"/v1/var/{path}").status == 400


def test_empty_path(a):
    assert_error(put(a, "", {"Items": {"k": "v"}}), 400)


@pytest.mark.parametrize("path", [
    "nomad", "nomad/foo", "nomad/jobsx", "nomad/job-templates",
    "nomad/job-templates/a/b", "nomad/variables/x",
])
def test_reserved_nomad_path(a, path):
    assert_error(put(a, path, {"Items": {"k": "v"}}), 400, "nomad")


@pytest.mark.parametrize("path", [
    "nomad/jobs", "nomad/jobs/web", "nomad/jobs/web/group/task",
    "nomad/job-templates/tmpl", "nomadic/x",
])
def test_allowed_nomad_paths(a, path):
    r = put(a, path, {"Items": {"k": "v"}})
    assert r.status == 200, r


@pytest.mark.parametrize("cas", ["abc", "-1", "1.5", "0x10", "+1",
                                 "99999999999999999999999"])
def test_bad_cas(a, cas):
    assert_error(put(a, "err/cas", {"Items": {"k": "v"}}, f"?cas={cas}"),
                 400, "cas")
    assert_error(a.api("DELETE", f"/v1/var/err/cas?cas={cas}"), 400, "cas")
    assert a.api("GET", "/v1/var/err/cas").status == 404


def test_empty_cas_means_no_cas(a):
    """Nomad's parseCAS ignores an empty `cas=`: the write is a plain set
    (and a delete a plain delete), not a 400."""
    a.put_var("err/emptycas", {"k": "1"})
    r = put(a, "err/emptycas", {"Items": {"k": "2"}}, "?cas=")
    assert r.status == 200, r
    assert a.get_var("err/emptycas")["Items"] == {"k": "2"}
    r = a.api("DELETE", "/v1/var/err/emptycas?cas=")
    assert r.status == 204, r


def raw_request(a, method, path, body, headers=None):
    """http.client request that tolerates the server answering (and
    closing) before the whole body was sent."""
    c = http.client.HTTPConnection("127.0.0.1", a.http_port, timeout=30)
    try:
        c.putrequest(method, path)
        c.putheader("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        try:
            c.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        c.close()


def test_body_over_1mib_is_413(a):
    body = json.dumps({"Items": {"k": "x" * (1024 * 1024)}}).encode()
    status, text = raw_request(a, "PUT", "/v1/var/err/huge", body)
    assert status == 413, (status, text[:200])
    assert a.api("GET", "/v1/var/err/huge").status == 404
    # Just under the cap is parsed (and then refused for the item size).
    body = b'{"Items":{"k":"' + b"x" * (1024 * 1024 - 100) + b'"}}'
    status, text = raw_request(a, "PUT", "/v1/var/err/huge", body)
    assert status == 400, (status, text[:200])
    # The server is still healthy afterwards.
    assert a.api("GET", "/v1/agent/health").status == 200


@pytest.mark.parametrize("path", [
    "/", "/v1", "/v1/", "/v1/nope", "/v1/variables/x", "/v2/var/x",
    "/v1/varx", "/v1/vars/x", "/v1/operator/keyring", "/v1/operator/raft",
])
def test_unknown_route_404(a, path):
    assert_error(a.api("GET", path), 404, "Invalid URL path")


def test_keyring_subpath_quirk_405(a):
    """Spec 4.1: any /v1/operator/keyring/<other> subpath answers 405
    (Nomad checks `keys` then `key`, and falls through to 405)."""
    r = a.api("GET", "/v1/operator/keyring/bogus")
    assert r.status == 405, r


@pytest.mark.parametrize("method,path", [
    ("PATCH", "/v1/vars"),
    ("DELETE", "/v1/vars"),
    ("PUT", "/v1/vars"),
    ("PUT", "/v1/operator/keyring/keys"),
    ("DELETE", "/v1/operator/keyring/keys"),
    ("GET", "/v1/operator/keyring/rotate"),
    ("DELETE", "/v1/operator/keyring/rotate"),
    ("GET", "/v1/operator/keyring/key/"
            "00000000-0000-4000-8000-000000000000"),
    ("PUT", "/v1/status/leader"),
])
def test_wrong_method_405(a, method, path):
    r = a.api(method, path, b"{}" if method in ("PUT", "PATCH") else None)
    assert r.status == 405, r


@pytest.mark.parametrize("force", ["maybe", "yes", "2", "TRUE1", "tRuE"])
def test_invalid_force_422(a, force):
    kid = a.active_key()["KeyID"]
    r = a.api("DELETE", f"/v1/operator/keyring/key/{kid}?force={force}")
    assert_error(r, 422, "invalid force parameter")
    assert a.active_key()["KeyID"] == kid


def test_wildcard_namespace_on_write(a):
    r = put(a, "err/wild", {"Items": {"k": "v"}}, "?namespace=*")
    assert_error(r, 400)
    r = put(a, "err/wild", {"Namespace": "*", "Items": {"k": "v"}})
    assert_error(r, 400)
    r = a.api("DELETE", "/v1/var/err/wild?namespace=*")
    assert_error(r, 400)
    r = a.api("GET", "/v1/vars?prefix=err/wild&namespace=*")
    assert r.status == 200 and r.json() == [], r


def test_wildcard_namespace_on_single_read(a):
    assert_error(a.api("GET", "/v1/var/err/wild?namespace=*"), 400)


@pytest.mark.parametrize("ns", ["a.b", "a/b", "a b", "x" * 200])
def test_invalid_namespace(a, ns):
    from urllib.parse import quote
    r = put(a, "err/ns", {"Items": {"k": "v"}}, "?namespace=" + quote(ns))
    assert_error(r, 400, "namespace")


def test_multiple_lock_ops(a):
    for q in ("?lock-acquire&lock-release", "?lock-acquire&lock-renew",
              "?lock-renew&lock-release",
              "?lock-acquire&lock-renew&lock-release"):
        r = put(a, "err/lock", {"Items": {"k": "v"}}, q)
        assert_error(r, 400, "multiple lock operations")


def test_cas_with_lock_op(a):
    r = put(a, "err/lock", {"Items": {"k": "v"}}, "?lock-acquire&cas=0")
    assert_error(r, 400, "cas")


def test_bad_per_page_and_token(a):
    assert a.api("GET", "/v1/vars?per_page=abc").status == 400
    assert a.api("GET", "/v1/vars?per_page=-1").status == 400
    assert a.api("GET", "/v1/vars?next_token=nodot").status == 400


def test_bad_publish_time(a):
    before = a.keys()
    for pt in ("soon", "-5", "1e9"):
        r = a.api("PUT", f"/v1/operator/keyring/rotate?publish_time={pt}")
        assert_error(r, 400)
    assert a.keys() == before


def test_malformed_url_escape(a):
    r = a.api("GET", "/v1/var/a%zz")
    assert r.status == 400, r
    r = a.api("GET", "/v1/var/a%00b")
    assert r.status == 400, r


def test_server_survives_garbage(a):
    """Bytes that are not HTTP must not take the server down."""
    import socket
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET " + b"/" * 70000 +
                 b" HTTP/1.1\r\n\r\n", b"PUT /v1/var/x HTTP/1.1\r\n"
                 b"Content-Length: 99999999999999999999\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", a.http_port), timeout=5)
        try:
            s.sendall(junk)
            try:
                s.recv(4096)
            except OSError:
                pass
        finally:
            s.close()
    assert a.api("GET", "/v1/agent/health").status == 200


def test_list_filter_is_refused_not_ignored(module_agent):
    r = module_agent.api("GET", "/v1/vars?filter=Path%20contains%20%22a%22")
    assert r.status == 400, r
    assert "filter" in r.text


def test_no_cleartext_http2(module_agent):
    """h2o 2.2.5 lacks the HTTP/2 Rapid Reset fix: no h2c upgrade, and no
    prior-knowledge HTTP/2 on the plain port."""
    import subprocess
    up = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_version}",
         "--http2", module_agent.url("/v1/agent/health")],
        capture_output=True, text=True, timeout=10)
    assert up.stdout == "1.1", up
    pk = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_version}",
         "--http2-prior-knowledge", module_agent.url("/v1/agent/health")],
        capture_output=True, text=True, timeout=10)
    assert pk.stdout != "2", pk
