"""Variables over HTTP: put, get, list (pagination, prefix, namespaces),
purge, check-and-set, index headers.  One agent serves the module; every
test writes under its own path prefix so tests do not see each other."""
import threading
import time
import urllib.parse

import pytest

META_FIELDS = ("Namespace", "Path", "CreateIndex", "ModifyIndex",
               "CreateTime", "ModifyTime")


@pytest.fixture
def a(module_agent):
    return module_agent


def list_all(a, query, per_page=None, max_pages=1000):
    """Follows X-Nomad-NextToken until done; returns (items, pages)."""
    items, pages, token = [], [], None
    for _ in range(max_pages):
        q = dict(query)
        if per_page:
            q["per_page"] = str(per_page)
        if token:
            q["next_token"] = token
        r = a.api("GET", "/v1/vars?" + urllib.parse.urlencode(q))
        assert r.status == 200, r
        page = r.json()
        assert isinstance(page, list)
        pages.append(page)
        items.extend(page)
        token = r.headers.get("X-Nomad-NextToken")
        if not token:
            return items, pages
        # The token names the first item of the next page.
        assert "." in token, token
    raise AssertionError("pagination did not terminate")


def test_put_get_roundtrip(a):
    before = time.time_ns()
    r = a.api("PUT", "/v1/var/rt/app/db",
              {"Items": {"user": "admin", "password": "hunter2"}})
    after = time.time_ns()
    assert r.status == 200, r
    put = r.json()
    for f in META_FIELDS:
        assert f in put, (f, put)
    assert put["Namespace"] == "default"
    assert put["Path"] == "rt/app/db"
    assert put["Items"] == {"user": "admin", "password": "hunter2"}
    assert put["CreateIndex"] == put["ModifyIndex"] > 0
    assert before - 5 * 10**9 <= put["CreateTime"] <= after + 5 * 10**9
    assert put["CreateTime"] == put["ModifyTime"]
    assert int(r.headers["X-Nomad-Index"]) == put["ModifyIndex"]

    r = a.api("GET", "/v1/var/rt/app/db")
    assert r.status == 200, r
    got = r.json()
    assert got == put
    assert int(r.headers["X-Nomad-Index"]) == put["ModifyIndex"]
    assert "Lock" not in got


def test_body_path_and_namespace_overridden_by_url(a):
    r = a.api("PUT", "/v1/var/rt/url-wins",
              {"Path": "rt/other", "Items": {"k": "v"}})
    assert r.status == 200, r
    assert r.json()["Path"] == "rt/url-wins"
    assert a.api("GET", "/v1/var/rt/other").status == 404


def test_update_keeps_create_fields(a):
    first = a.put_var("rt/upd", {"v": "1"})
    time.sleep(0.01)
    second = a.put_var("rt/upd", {"v": "2", "w": "3"})
    assert second["CreateIndex"] == first["CreateIndex"]
    assert second["CreateTime"] == first["CreateTime"]
    assert second["ModifyIndex"] > first["ModifyIndex"]
    assert second["ModifyTime"] > first["ModifyTime"]
    # A put replaces the whole item map.
    assert a.get_var("rt/upd")["Items"] == {"v": "2", "w": "3"}


def test_unicode_and_binaryish_values_roundtrip(a):
    items = {"emoji": "caf\u00e9 \U0001F511", "nl": "a\nb\r\n\tc",
             "quote": "\"'\\", "ключ": "значение", "nulls": "x\u0001y"}
    a.put_var("rt/unicode", items)
    assert a.get_var("rt/unicode")["Items"] == items


def test_items_at_size_limit_accepted(a):
    # Keys + values may total exactly 64 KiB.
    items = {"k": "x" * (65536 - 1)}
    a.put_var("rt/exact64k", items)
    assert a.get_var("rt/exact64k")["Items"] == items
    r = a.api("PUT", "/v1/var/rt/over64k", {"Items": {"k": "x" * 65536}})
    assert r.status == 400, r


def test_path_length_limit(a):
    ok = "rt/" + "p" * 125
    assert len(ok) == 128
    a.put_var(ok, {"k": "v"})
    assert a.get_var(ok)["Path"] == ok
    r = a.api("PUT", "/v1/var/" + ok + "q", {"Items": {"k": "v"}})
    assert r.status == 400, r


def test_get_missing_is_404(a):
    r = a.api("GET", "/v1/var/rt/never-written")
    assert r.status == 404, r
    assert "variable not found" in r.text


def test_purge(a):
    a.put_var("rt/purge-me", {"k": "v"})
    r = a.api("DELETE", "/v1/var/rt/purge-me")
    assert r.status == 204, r
    assert r.body == b""
    assert int(r.headers["X-Nomad-Index"]) > 0
    r = a.api("GET", "/v1/var/rt/purge-me")
    assert r.status == 404, r
    listed, _ = list_all(a, {"prefix": "rt/purge-me"})
    assert listed == []
    # Deleting again (or something never written) is not an error.
    assert a.api("DELETE", "/v1/var/rt/purge-me").status == 204


def test_list_pagination_sees_every_var_once(a):
    n = 57
    paths = [f"pg/item-{i:03d}" for i in range(n)]
    for p in paths:
        a.put_var(p, {"v": p})
    # Noise outside the prefix must not show up.
    a.put_var("pgx/noise", {"v": "1"})

    whole, pages = list_all(a, {"prefix": "pg/"})
    assert len(pages) == 1
    assert [v["Path"] for v in whole] == sorted(paths)

    for per_page in (1, 7, 10, 56, 57, 58):
        got, pages = list_all(a, {"prefix": "pg/"}, per_page=per_page)
        seen = [v["Path"] for v in got]
        assert sorted(seen) == sorted(paths), per_page
        assert len(seen) == len(set(seen)) == n, per_page
        assert seen == sorted(seen), "pages come back in path order"
        assert all(len(p) <= per_page for p in pages)
        assert all(len(p) == per_page for p in pages[:-1])
        assert len(pages) == -(-n // per_page), (per_page, len(pages))
        for v in got:
            assert "Items" not in v, "list must not return Items"
            for f in META_FIELDS:
                assert f in v


def test_next_token_names_first_item_of_next_page(a):
    for i in range(5):
        a.put_var(f"tok/v{i}", {"v": str(i)})
    r = a.api("GET", "/v1/vars?prefix=tok/&per_page=2")
    assert r.status == 200, r
    assert [v["Path"] for v in r.json()] == ["tok/v0", "tok/v1"]
    assert r.headers["X-Nomad-NextToken"] == "default.tok/v2"
    r = a.api("GET", "/v1/vars?prefix=tok/&per_page=2&next_token="
              + urllib.parse.quote("default.tok/v2"))
    assert [v["Path"] for v in r.json()] == ["tok/v2", "tok/v3"]
    assert r.headers["X-Nomad-NextToken"] == "default.tok/v4"
    r = a.api("GET", "/v1/vars?prefix=tok/&per_page=2&next_token="
              + urllib.parse.quote("default.tok/v4"))
    assert [v["Path"] for v in r.json()] == ["tok/v4"]
    assert r.headers.get("X-Nomad-NextToken") in (None, "")


def test_list_prefix_filter(a):
    for p in ("pf/a/1", "pf/a/2", "pf/ab", "pf/b/1"):
        a.put_var(p, {"v": p})
    got, _ = list_all(a, {"prefix": "pf/a"})
    assert [v["Path"] for v in got] == ["pf/a/1", "pf/a/2", "pf/ab"]
    got, _ = list_all(a, {"prefix": "pf/a/"})
    assert [v["Path"] for v in got] == ["pf/a/1", "pf/a/2"]
    got, _ = list_all(a, {"prefix": "pf/zzz"})
    assert got == []


def test_list_empty_is_array_not_null(a):
    r = a.api("GET", "/v1/vars?prefix=does-not-exist/")
    assert r.status == 200, r
    assert r.body.strip() == b"[]"


def test_namespaces_are_separate(a):
    r = a.api("PUT", "/v1/var/ns/shared?namespace=alpha",
              {"Items": {"who": "alpha"}})
    assert r.status == 200, r
    assert r.json()["Namespace"] == "alpha"
    # The namespace may also come from the body.
    r = a.api("PUT", "/v1/var/ns/shared",
              {"Namespace": "beta", "Items": {"who": "beta"}})
    assert r.status == 200, r
    assert r.json()["Namespace"] == "beta"
    r = a.api("PUT", "/v1/var/ns/only-beta?namespace=beta",
              {"Items": {"who": "beta2"}})
    assert r.status == 200, r

    assert a.get_var("ns/shared", "?namespace=alpha")["Items"] == \
        {"who": "alpha"}
    assert a.get_var("ns/shared", "?namespace=beta")["Items"] == \
        {"who": "beta"}
    assert a.api("GET", "/v1/var/ns/shared").status == 404  # default
    assert a.api("GET", "/v1/var/ns/only-beta?namespace=alpha").status == 404

    got, _ = list_all(a, {"prefix": "ns/", "namespace": "alpha"})
    assert [(v["Namespace"], v["Path"]) for v in got] == \
        [("alpha", "ns/shared")]
    got, _ = list_all(a, {"prefix": "ns/", "namespace": "beta"})
    assert [(v["Namespace"], v["Path"]) for v in got] == \
        [("beta", "ns/only-beta"), ("beta", "ns/shared")]
    got, _ = list_all(a, {"prefix": "ns/"})
    assert got == []
    expect = {("alpha", "ns/shared"), ("beta", "ns/only-beta"),
              ("beta", "ns/shared")}
    for per_page in (None, 1, 2):
        got, _ = list_all(a, {"prefix": "ns/", "namespace": "*"},
                          per_page=per_page)
        pairs = [(v["Namespace"], v["Path"]) for v in got]
        assert len(pairs) == len(set(pairs)) == 3, (per_page, pairs)
        assert set(pairs) == expect

    # Deleting in one namespace leaves the other alone.
    assert a.api("DELETE",
                 "/v1/var/ns/shared?namespace=alpha").status == 204
    assert a.get_var("ns/shared", "?namespace=beta")["Items"] == \
        {"who": "beta"}


def test_cas_create_only_conflict_returns_current(a):
    created = a.put_var("cas/one", {"v": "1"}, "?cas=0")
    r = a.api("PUT", "/v1/var/cas/one?cas=0", {"Items": {"v": "clobber"}})
    assert r.status == 409, r
    body = r.json()
    assert body["Path"] == "cas/one"
    assert body["Namespace"] == "default"
    assert body["ModifyIndex"] == created["ModifyIndex"]
    assert body["CreateIndex"] == created["CreateIndex"]
    assert body["Items"] == {"v": "1"}
    assert a.get_var("cas/one")["Items"] == {"v": "1"}


def test_conflict_index_header_is_the_conflicting_vars(a):
    """Nomad's variableUpsert/variableDelete set X-Nomad-Index on a 409 to
    the conflicting Variable's ModifyIndex, not the table's index."""
    created = a.put_var("cas/hdr", {"v": "1"})
    a.put_var("cas/hdr-later", {"v": "moves the table index on"})
    r = a.api("PUT", "/v1/var/cas/hdr?cas=0", {"Items": {"v": "2"}})
    assert r.status == 409, r
    assert int(r.headers["X-Nomad-Index"]) == created["ModifyIndex"]
    r = a.api("DELETE", "/v1/var/cas/hdr?cas=1")
    assert r.status == 409, r
    assert int(r.headers["X-Nomad-Index"]) == created["ModifyIndex"]


def test_cas_wrong_and_right_index(a):
    v = a.put_var("cas/two", {"v": "1"})
    r = a.api("PUT", f"/v1/var/cas/two?cas={v['ModifyIndex'] + 1000}",
              {"Items": {"v": "wrong"}})
    assert r.status == 409, r
    assert r.json()["ModifyIndex"] == v["ModifyIndex"]
    r = a.api("PUT", f"/v1/var/cas/two?cas={v['ModifyIndex']}",
              {"Items": {"v": "right"}})
    assert r.status == 200, r
    v2 = r.json()
    assert v2["ModifyIndex"] > v["ModifyIndex"]
    assert v2["Items"] == {"v": "right"}
    # The old index is now stale.
    r = a.api("PUT", f"/v1/var/cas/two?cas={v['ModifyIndex']}",
              {"Items": {"v": "stale"}})
    assert r.status == 409, r
    assert a.get_var("cas/two")["Items"] == {"v": "right"}


def test_cas_nonzero_on_missing_conflicts(a):
    r = a.api("PUT", "/v1/var/cas/absent?cas=5", {"Items": {"v": "x"}})
    assert r.status == 409, r
    assert a.api("GET", "/v1/var/cas/absent").status == 404


def test_delete_cas(a):
    v = a.put_var("cas/del", {"v": "1"})
    r = a.api("DELETE", f"/v1/var/cas/del?cas={v['ModifyIndex'] + 7}")
    assert r.status == 409, r
    cur = r.json()
    assert cur["ModifyIndex"] == v["ModifyIndex"]
    assert a.get_var("cas/del")["Items"] == {"v": "1"}
    r = a.api("DELETE", f"/v1/var/cas/del?cas={v['ModifyIndex']}")
    assert r.status == 204, r
    assert a.api("GET", "/v1/var/cas/del").status == 404


def test_cas_increments_under_concurrency(a):
    """Check-and-set read-modify-write loops from several threads: no
    increment may be lost or applied twice."""
    a.put_var("cas/counter", {"n": "0"}, "?cas=0")
    threads, per_thread = 6, 8
    errors, conflicts = [], [0]
    lock = threading.Lock()

    def worker():
        try:
            for _ in range(per_thread):
                while True:
                    cur = a.get_var("cas/counter")
                    n = int(cur["Items"]["n"]) + 1
                    r = a.api("PUT",
                              f"/v1/var/cas/counter?cas={cur['ModifyIndex']}",
                              {"Items": {"n": str(n)}})
                    if r.status == 200:
                        break
                    assert r.status == 409, r
                    with lock:
                        conflicts[0] += 1
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert a.get_var("cas/counter")["Items"]["n"] == str(threads * per_thread)


def test_simultaneous_creates_one_winner(a):
    """Writes that arrive together travel in one raft entry (a batch);
    each still gets its own outcome: of 12 create-only PUTs released at
    once on one path, exactly one wins and the rest see 409 with the
    winner's value, in every round."""
    n = 12
    for rnd in range(5):
        path = f"batch/race{rnd}"
        gate = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            gate.wait()
            results[i] = a.api("PUT", f"/v1/var/{path}?cas=0",
                               {"Items": {"who": str(i)}})

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        won = [i for i, r in enumerate(results) if r.status == 200]
        assert len(won) == 1, [r.status for r in results]
        winner = str(won[0])
        for i, r in enumerate(results):
            if i != won[0]:
                assert r.status == 409, r
                assert r.json()["Items"] == {"who": winner}
        assert a.get_var(path)["Items"] == {"who": winner}


def test_index_headers(a):
    r = a.api("PUT", "/v1/var/idx/x", {"Items": {"k": "v"}})
    put_idx = int(r.headers["X-Nomad-Index"])
    assert put_idx == r.json()["ModifyIndex"]
    r = a.api("GET", "/v1/var/idx/x")
    assert int(r.headers["X-Nomad-Index"]) == put_idx
    r = a.api("GET", "/v1/vars?prefix=idx/")
    assert int(r.headers["X-Nomad-Index"]) >= put_idx
    r = a.api("PUT", "/v1/var/idx/x?cas=0", {"Items": {"k": "v"}})
    assert r.status == 409
    assert int(r.headers["X-Nomad-Index"]) >= put_idx
    r = a.api("GET", "/v1/operator/keyring/keys")
    assert int(r.headers["X-Nomad-Index"]) > 0
    r = a.api("DELETE", "/v1/var/idx/x")
    assert r.status == 204
    assert int(r.headers["X-Nomad-Index"]) > put_idx
    r = a.api("GET", "/v1/var/idx/x")
    assert r.status == 404
    assert "X-Nomad-Index" in r.headers


def test_post_works_like_put(a):
    r = a.api("POST", "/v1/var/post/x", {"Items": {"k": "v"}})
    assert r.status == 200, r
    assert a.get_var("post/x")["Items"] == {"k": "v"}


def test_pretty_output(a):
    a.put_var("pretty/x", {"k": "v"})
    r = a.api("GET", "/v1/var/pretty/x?pretty")
    assert r.status == 200
    assert b"\n" in r.body.strip()
    assert r.json()["Items"] == {"k": "v"}


def test_writes_of_one_variable_never_share_a_modify_index(a):
    """Many clients write the same few Variables at once.  Writes that
    arrive in one loop turn share a raft entry, but two writes of one
    Variable never do: each gets its own ModifyIndex, so a ModifyIndex
    names one version (a check-and-set against it means that version),
    and the last acknowledged write of each Variable is what it holds."""
    import json
    from test_lifecycle import pipeline
    paths = [f"same/{i}" for i in range(4)]
    reqs = [("PUT", f"/v1/var/{paths[i % 4]}",
             json.dumps({"Items": {"n": str(i)}}).encode())
            for i in range(2000)]
    acks = {}
    for (st, body), (_, url, req) in zip(pipeline(a.http_port, reqs,
                                                  conns=32, window=8), reqs):
        assert st == 200, body[:200]
        v = json.loads(body)
        acks.setdefault(v["Path"], []).append(
            (v["ModifyIndex"], json.loads(req)["Items"]))
    batched = 0
    for path in paths:
        idx = [i for i, _ in acks[path]]
        assert len(set(idx)) == len(idx), (
            path, sorted(i for i in idx if idx.count(i) > 1)[:10])
        last_i, last_items = max(acks[path], key=lambda x: x[0])
        got = a.get_var(path)
        assert got["ModifyIndex"] == last_i and got["Items"] == last_items
        batched += len(idx)
    # The writes did come together: far fewer raft indexes than writes
    # would mean batching across Variables still works.
    all_idx = {i for v in acks.values() for i, _ in v}
    assert len(all_idx) < batched, (len(all_idx), batched)
