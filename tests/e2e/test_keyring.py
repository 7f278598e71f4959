"""Root keyring over HTTP: list, rotate (plain, full, prepublished),
remove.  Every test gets a fresh agent: rotations change global state."""
import time
import uuid

from conftest import UUID_RE

KEYS = "/v1/operator/keyring/keys"
ROTATE = "/v1/operator/keyring/rotate"
META_FIELDS = {"KeyID", "Algorithm", "CreateTime", "CreateIndex",
               "ModifyIndex", "State", "PublishTime"}


def delete_key(a, kid, query=""):
    return a.api("DELETE", f"/v1/operator/keyring/key/{kid}{query}")


def states(a):
    return {k["KeyID"]: k["State"] for k in a.keys()}


def test_initial_keyring(agent):
    before = time.time_ns()
    r = agent.api("GET", KEYS)
    assert r.status == 200, r
    assert int(r.headers["X-Nomad-Index"]) > 0
    keys = r.json()
    assert len(keys) == 1, keys
    k = keys[0]
    assert set(k) == META_FIELDS, k
    assert UUID_RE.match(k["KeyID"]), k
    assert k["Algorithm"] == "aes256-gcm"
    assert k["State"] == "active"
    assert k["PublishTime"] == 0
    assert 0 < k["CreateIndex"] <= k["ModifyIndex"]
    # CreateTime is Unix nanoseconds, recent.
    assert before - 120 * 10**9 < k["CreateTime"] <= time.time_ns()


def test_rotate_reply_and_transitions(agent):
    old = agent.active_key()
    before = time.time_ns()
    r = agent.api("PUT", ROTATE)
    assert r.status == 200, r
    body = r.json()
    assert set(body) == {"Key", "Index"}, body
    new = body["Key"]
    assert set(new) == META_FIELDS
    assert UUID_RE.match(new["KeyID"]) and new["KeyID"] != old["KeyID"]
    assert new["State"] == "active"
    assert new["Algorithm"] == "aes256-gcm"
    assert new["PublishTime"] == 0
    # Nomad's rotate reply carries zero indexes in Key.
    assert new["CreateIndex"] == 0 and new["ModifyIndex"] == 0
    assert body["Index"] > old["ModifyIndex"]
    assert int(r.headers["X-Nomad-Index"]) == body["Index"]
    assert before - 5 * 10**9 <= new["CreateTime"] <= time.time_ns()

    keys = {k["KeyID"]: k for k in agent.keys()}
    assert len(keys) == 2
    assert keys[new["KeyID"]]["State"] == "active"
    assert keys[new["KeyID"]]["CreateIndex"] == body["Index"]
    assert keys[old["KeyID"]]["State"] == "inactive"
    # The demoted key keeps its creation fields; its ModifyIndex moves.
    assert keys[old["KeyID"]]["CreateIndex"] == old["CreateIndex"]
    assert keys[old["KeyID"]]["CreateTime"] == old["CreateTime"]
    assert keys[old["KeyID"]]["ModifyIndex"] == body["Index"]

    # POST works too, and only one key is ever active.
    r = agent.api("POST", ROTATE)
    assert r.status == 200, r
    st = states(agent)
    assert sorted(st.values()) == ["active", "inactive", "inactive"]


def test_rotate_keeps_old_vars_readable_and_tracks_key_use(agent):
    """Which key encrypted a variable shows through the in-use check: the
    old key cannot be removed while a variable still uses it, and can once
    that variable has been rewritten under the new key."""
    old = agent.active_key()["KeyID"]
    agent.put_var("kr/a", {"secret": "under-old-key"})
    agent.put_var("kr/b", {"secret": "also-old"})
    new = agent.rotate()["KeyID"]
    assert states(agent) == {old: "inactive", new: "active"}

    # Old variables still read after rotation.
    assert agent.get_var("kr/a")["Items"] == {"secret": "under-old-key"}
    assert agent.get_var("kr/b")["Items"] == {"secret": "also-old"}
    # New writes go under the new key: a fresh variable does not pin the
    # old key (checked below once the old ones are rewritten).
    agent.put_var("kr/c", {"secret": "under-new-key"})

    r = delete_key(agent, old)
    assert r.status == 409, r
    assert "root key in use, cannot delete" in r.text
    assert old in states(agent)

    agent.put_var("kr/a", {"secret": "rewritten"})
    r = delete_key(agent, old)
    assert r.status == 409, "kr/b still uses the old key: %r" % r
    agent.api("DELETE", "/v1/var/kr/b")

    r = delete_key(agent, old)
    assert r.status == 200, r
    assert set(r.json()) == {"Index"}
    assert int(r.headers["X-Nomad-Index"]) == r.json()["Index"]
    assert states(agent) == {new: "active"}
    assert agent.get_var("kr/a")["Items"] == {"secret": "rewritten"}
    assert agent.get_var("kr/c")["Items"] == {"secret": "under-new-key"}
    # Deleting it again: it is gone.
    r = delete_key(agent, old)
    assert r.status == 404, r
    assert "root key not found" in r.text


def test_new_writes_use_new_key(agent):
    """A variable written only after rotation never pins the old key."""
    old = agent.active_key()["KeyID"]
    agent.rotate()
    for i in range(5):
        agent.put_var(f"kr/new{i}", {"v": str(i)})
    r = delete_key(agent, old)
    assert r.status == 200, r
    for i in range(5):
        assert agent.get_var(f"kr/new{i}")["Items"] == {"v": str(i)}


def test_cas_update_moves_var_to_new_key(agent):
    old = agent.active_key()["KeyID"]
    v = agent.put_var("kr/cas", {"v": "1"})
    agent.rotate()
    agent.put_var("kr/cas", {"v": "2"}, f"?cas={v['ModifyIndex']}")
    assert delete_key(agent, old).status == 200


def wait_rekey_done(a, timeout=30):
    deadline = time.time() + timeout
    while True:
        r = a.api("GET", "/v1/operator/keyring/rekey")
        assert r.status == 200, r
        if not r.json()["Running"]:
            return
        assert time.time() < deadline, r.json()
        time.sleep(0.1)


def test_rotate_full_rekeys_every_old_key(agent):
    """Spec 7.1/7.4: a full rotation turns the active and inactive keys
    rekeying (the transition itself is unit-tested in test_state); the
    rekey job then moves their Variables to the new key and marks them
    inactive, so both can be removed without -force."""
    k1 = agent.active_key()["KeyID"]
    agent.put_var("kr/full1", {"v": "1"})
    k2 = agent.rotate()["KeyID"]                 # k1 -> inactive
    agent.put_var("kr/full2", {"v": "2"})
    assert states(agent) == {k1: "inactive", k2: "active"}
    # Without a rekey, k1 still holds kr/full1.
    assert delete_key(agent, k1).status == 409
    r = agent.api("PUT", ROTATE + "?full")
    assert r.status == 200, r
    k3 = r.json()["Key"]["KeyID"]
    assert r.json()["Key"]["State"] == "active"
    assert states(agent)[k1] in ("rekeying", "inactive")
    wait_rekey_done(agent)
    assert states(agent) == {k1: "inactive", k2: "inactive", k3: "active"}
    assert agent.get_var("kr/full1")["Items"] == {"v": "1"}
    assert agent.get_var("kr/full2")["Items"] == {"v": "2"}
    assert delete_key(agent, k1).status == 200
    assert delete_key(agent, k2).status == 200
    assert agent.get_var("kr/full1")["Items"] == {"v": "1"}


def test_rotate_full_false_still_rekeys(agent):
    """The presence of `full` alone asks for a rekey, as in Nomad: the
    Variable under the old key moves, so the key can go without -force
    (after a plain rotation it could not)."""
    k1 = agent.active_key()["KeyID"]
    agent.put_var("kr/ff", {"v": "1"})
    k2 = agent.rotate("?full=false")["KeyID"]
    wait_rekey_done(agent)
    assert states(agent) == {k1: "inactive", k2: "active"}
    assert delete_key(agent, k1).status == 200
    assert agent.get_var("kr/ff")["Items"] == {"v": "1"}


def test_rotate_prepublished_unchanged(agent):
    """A plain rotation leaves a prepublished key alone (rekeying keys
    likewise: see test_state's transition tests)."""
    k1 = agent.active_key()["KeyID"]
    pub = time.time_ns() + 3600 * 10**9
    k2 = agent.rotate(f"?publish_time={pub}")["KeyID"]     # prepublished
    k3 = agent.rotate()["KeyID"]
    assert states(agent) == {k1: "inactive", k2: "prepublished",
                             k3: "active"}
    assert [k["PublishTime"] for k in agent.keys()
            if k["KeyID"] == k2] == [pub]


def test_publish_time_with_full_is_rejected(agent):
    before = agent.keys()
    pub = time.time_ns() + 3600 * 10**9
    for q in (f"?full&publish_time={pub}", f"?publish_time={pub}&full=true"):
        r = agent.api("PUT", ROTATE + q)
        assert r.status == 400, r
        assert r.text.strip() == ("keyring cannot be prepublished and full "
                                  "rotated at the same time"), r.text
    assert agent.keys() == before


def test_prepublish(agent):
    active = agent.active_key()
    pub = time.time_ns() + 3600 * 10**9
    r = agent.api("PUT", ROTATE + f"?publish_time={pub}")
    assert r.status == 200, r
    key = r.json()["Key"]
    assert key["State"] == "prepublished"
    assert key["PublishTime"] == pub
    keys = {k["KeyID"]: k for k in agent.keys()}
    assert len(keys) == 2
    assert keys[key["KeyID"]]["State"] == "prepublished"
    assert keys[key["KeyID"]]["PublishTime"] == pub
    # The active key is untouched and still encrypts.
    assert keys[active["KeyID"]]["State"] == "active"
    assert keys[active["KeyID"]]["ModifyIndex"] == active["ModifyIndex"]
    agent.put_var("kr/pp", {"v": "1"})
    r = delete_key(agent, active["KeyID"])
    assert r.status == 400, r
    # More than one key may be prepublished.
    key2 = agent.rotate(f"?publish_time={pub + 10**9}")
    st = states(agent)
    assert st[key2["KeyID"]] == "prepublished"
    assert st[key["KeyID"]] == "prepublished"
    # No variable uses a prepublished key: it can go without force.
    r = delete_key(agent, key["KeyID"])
    assert r.status == 200, r
    assert agent.get_var("kr/pp")["Items"] == {"v": "1"}


def test_publish_time_zero_is_plain_rotation(agent):
    old = agent.active_key()["KeyID"]
    new = agent.rotate("?publish_time=0")
    assert new["State"] == "active"
    assert states(agent)[old] == "inactive"


def test_remove_active_refused(agent):
    kid = agent.active_key()["KeyID"]
    for q in ("", "?force=true"):
        r = delete_key(agent, kid, q)
        assert r.status == 400, r
        assert "active root key cannot be deleted - call rotate first" \
            in r.text
    assert states(agent) == {kid: "active"}


def test_remove_unknown_key(agent):
    r = delete_key(agent, str(uuid.uuid4()))
    assert r.status == 404, r
    assert "root key not found" in r.text


def test_remove_in_use_needs_force(agent):
    old = agent.active_key()["KeyID"]
    agent.put_var("kr/pinned", {"secret": "s3cr3t"})
    new = agent.rotate()["KeyID"]
    for q in ("", "?force=false", "?force=0", "?force=F"):
        r = delete_key(agent, old, q)
        assert r.status == 409, (q, r)
        assert "root key in use, cannot delete" in r.text
    assert old in states(agent)
    r = delete_key(agent, old, "?force=true")
    assert r.status == 200, r
    assert states(agent) == {new: "active"}
    # The variable's key is gone: it cannot be decrypted any more, and the
    # reply must not pretend otherwise (nor leak anything).
    r = agent.api("GET", "/v1/var/kr/pinned")
    assert r.status != 200, r
    assert b"s3cr3t" not in r.body
    # Writing it again under the active key repairs it.
    agent.put_var("kr/pinned", {"secret": "fresh"})
    assert agent.get_var("kr/pinned")["Items"] == {"secret": "fresh"}


def test_keys_index_moves_with_changes(agent):
    i1 = int(agent.api("GET", KEYS).headers["X-Nomad-Index"])
    agent.rotate()
    i2 = int(agent.api("GET", KEYS).headers["X-Nomad-Index"])
    assert i2 > i1
    # A variable write does not change the keyring's index.
    agent.put_var("kr/idx", {"v": "1"})
    i3 = int(agent.api("GET", KEYS).headers["X-Nomad-Index"])
    assert i3 == i2


def test_status_leader(agent):
    r = agent.api("GET", "/v1/status/leader")
    assert r.status == 200, r
    leader = r.json()
    assert leader == f"127.0.0.1:{agent.rpc_port}", leader


def test_health_reports_key_age_and_warns_when_overdue(make_agent):
    """The health keyring section shows the active key's age; once it is
    older than root_key_rotation_threshold (here rotation cannot happen:
    the periodic job runs only every 10 minutes) it carries a warning,
    without failing the check."""
    a = make_agent('server {\n  root_key_rotation_threshold = "2s"\n'
                   '  root_key_gc_interval = "10m"\n}\n')
    h = a.api("GET", "/v1/agent/health").json()["keyring"]
    active = [k["KeyID"] for k in a.keys() if k["State"] == "active"][0]
    assert h["active_key_id"] == active
    assert h["rotation_threshold_seconds"] == 2
    assert 0 <= h["active_key_age_seconds"] <= 2
    deadline = time.time() + 20
    while True:
        r = a.api("GET", "/v1/agent/health")
        h = r.json()["keyring"]
        if h["warnings"]:
            break
        assert time.time() < deadline, h
        time.sleep(0.3)
    assert r.status == 200, r
    assert h["active_key_age_seconds"] >= 2
    assert active in h["warnings"][0]
    assert "root_key_rotation_threshold" in h["warnings"][0]
    # A rotation clears it.
    assert a.api("PUT", ROTATE).status == 200
    h = a.api("GET", "/v1/agent/health").json()["keyring"]
    assert h["warnings"] == [] and h["active_key_id"] != active
