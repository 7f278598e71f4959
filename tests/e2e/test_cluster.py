"""Clusters of real keyraft processes on loopback: formation through
server_join, leader forwarding, failover under load, losing a minority,
and a lagging server catching up through a raft snapshot."""
import random
import threading
import time

from conftest import SLOW, cluster_leader


def put(a, path, value, timeout=10):
    return a.api("PUT", f"/v1/var/{path}", {"Items": {"v": value}},
                 timeout=timeout)


def items(r):
    return r.json()["Items"] if r.status == 200 else r.status


def test_three_servers_form_forward_and_replicate(make_cluster):
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    followers = [a for a in agents if a is not leader]

    # A write sent to a follower is forwarded, and its answer comes back
    # unchanged (the index header included).
    r = put(followers[0], "app/db", "s3cret")
    assert r.status == 200, r
    assert r.json()["Items"] == {"v": "s3cret"}
    index = int(r.headers["X-Nomad-Index"])
    # Consistent reads on every server see it at once.
    for a in agents:
        r = a.api("GET", "/v1/var/app/db")
        assert r.status == 200 and items(r) == {"v": "s3cret"}, (a.name, r)
        assert int(r.headers["X-Nomad-Index"]) == index
    # Stale reads are served by each server itself and say so.
    deadline = time.time() + 5 * SLOW
    for a in followers:
        while True:
            r = a.api("GET", "/v1/var/app/db?stale")
            if r.status == 200 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert items(r) == {"v": "s3cret"}
        assert r.headers["X-Nomad-KnownLeader"] == "true"
        assert int(r.headers["X-Nomad-LastContact"]) < 5000
    # Every server decrypted the key itself; none lists anything extra.
    keys = [a.api("GET", "/v1/operator/keyring/keys").json() for a in agents]
    assert keys[0] == keys[1] == keys[2] and len(keys[0]) == 1
    for a in agents:
        h = a.api("GET", "/v1/agent/health").json()
        assert h["keyring"]["ok"] and h["keyring"]["pending_keys"] == []
    # Rotation through a follower.
    r = followers[1].api("PUT", "/v1/operator/keyring/rotate")
    assert r.status == 200, r
    conf = followers[0].api("GET", "/v1/operator/raft/configuration").json()
    assert len(conf["Servers"]) == 3
    assert sum(s["Leader"] for s in conf["Servers"]) == 1
    assert all(s["Voter"] for s in conf["Servers"])


def test_kill9_leader_while_four_clients_write(make_cluster):
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    survivors = [a for a in agents if a is not leader]
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w):
        n = 0
        rnd = random.Random(w)
        while not stop.is_set():
            path = f"load/w{w}/{n}"
            target = rnd.choice(agents)
            try:
                r = put(target, path, f"value-{w}-{n}", timeout=5)
            except OSError:
                r = None
                time.sleep(0.05)  # the target is down: do not spin
            if r is not None and r.status == 200:
                with lock:
                    acked[path] = f"value-{w}-{n}"
            n += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5 * SLOW)
        killed_at = time.time()
        leader.kill9()
        new_leader = cluster_leader(survivors, timeout=5 * SLOW)
        elected_after = time.time() - killed_at
        time.sleep(1.5 * SLOW)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert elected_after < 5 * SLOW, elected_after
    assert new_leader in survivors
    assert len(acked) > 20, len(acked)
    # Every acknowledged write is present, with its value, on every
    # surviving server.
    for a in survivors:
        for path, value in acked.items():
            r = a.api("GET", f"/v1/var/{path}")
            assert r.status == 200 and items(r) == {"v": value}, (path, r)


def test_five_servers_tolerate_losing_two(make_cluster):
    agents = make_cluster(5)
    leader = cluster_leader(agents)
    doomed = [leader] + [a for a in agents if a is not leader][:1]
    for a in doomed:
        a.kill9()
    rest = [a for a in agents if a not in doomed]
    cluster_leader(rest, timeout=10)
    r = put(rest[0], "after/loss", "still-here")
    assert r.status == 200, r
    for a in rest:
        assert items(a.api("GET", "/v1/var/after/loss")) == {"v": "still-here"}


def test_lagging_server_catches_up_through_snapshot(make_cluster):
    agents = make_cluster(3, 'server {\n  raft_snapshot_threshold = 16\n'
                             '  raft_snapshot_interval = "0s"\n'
                             '  raft_trailing_logs = 4\n}\n')
    leader = cluster_leader(agents)
    lagger = [a for a in agents if a is not leader][0]
    lagger.stop()
    for i in range(120):
        assert put(leader, f"lag/{i}", str(i)).status == 200
    want = int(leader.api("GET", "/v1/vars").headers["X-Nomad-Index"])
    lagger.start(wait=False)
    lagger.wait_ready(timeout=30)
    # Caught up means its own state reached the leader's index.
    deadline = time.time() + 40 * SLOW
    have = 0
    while time.time() < deadline:
        have = int(lagger.api("GET", "/v1/vars?stale").headers["X-Nomad-Index"])
        if have >= want:
            break
        time.sleep(0.2)
    assert have >= want, (have, want, lagger.log()[-2000:])
    for i in range(120):
        r = lagger.api("GET", f"/v1/var/lag/{i}?stale")
        assert items(r) == {"v": str(i)}, (i, r)


def join_block(rpc_ports, expect):
    join = ", ".join(f'"127.0.0.1:{p}"' for p in rpc_ports)
    return (f'server {{\n  bootstrap_expect = {expect}\n  server_join {{\n'
            f'    retry_join = [{join}]\n    retry_interval = "1s"\n  }}\n}}\n')


def peers(a):
    return a.api("GET", "/v1/operator/raft/configuration").json()["Servers"]


def test_server_joins_a_running_cluster(make_cluster, make_agent):
    agents = make_cluster(3)
    # A fourth server that knows one member finds the cluster and is
    # added by the leader as a voter.
    d = make_agent(join_block([agents[0].rpc_port], 3), name="s3")
    deadline = time.time() + 20 * SLOW
    while time.time() < deadline:
        ps = peers(agents[1])
        if len(ps) == 4 and all(p["Voter"] for p in ps):
            break
        time.sleep(0.2)
    assert len(ps) == 4 and all(p["Voter"] for p in ps), ps
    assert put(agents[2], "joined/x", "1").status == 200
    deadline = time.time() + 10 * SLOW
    while time.time() < deadline:
        r = d.api("GET", "/v1/var/joined/x?stale")
        if r.status == 200:
            break
        time.sleep(0.1)
    assert items(r) == {"v": "1"}


def test_removed_server_cannot_rejoin_with_stale_state(make_cluster):
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    gone = [a for a in agents if a is not leader][0]
    gone.stop()
    addr = f"127.0.0.1:{gone.rpc_port}"
    r = leader.api("DELETE", f"/v1/operator/raft/peer?address={addr}")
    assert r.status == 200, r
    assert len(peers(leader)) == 2
    # Restarted with its old data it finds it was removed and stops,
    # loudly, instead of quietly rejoining.
    gone.start(wait=False)
    rc = gone.proc.wait(30 * SLOW)
    assert rc == 1
    assert "was removed from the cluster" in gone.log()
    assert len(peers(leader)) == 2


def test_requests_without_quorum_get_503_in_bounded_time(make_cluster):
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    survivor = [a for a in agents if a is not leader][0]
    for a in agents:
        if a is not survivor:
            a.kill9()
    t0 = time.time()
    r = put(survivor, "no/quorum", "x", timeout=30)
    took = time.time() - t0
    assert r.status == 503, r
    assert "leader" in r.text.lower()
    assert took < 15 * SLOW, took
    # Stale reads still work without a leader, and say so.
    r = survivor.api("GET", "/v1/vars?stale")
    assert r.status == 200
    deadline = time.time() + 10 * SLOW
    while r.headers["X-Nomad-KnownLeader"] != "false" and \
            time.time() < deadline:
        time.sleep(0.2)
        r = survivor.api("GET", "/v1/vars?stale")
    assert r.headers["X-Nomad-KnownLeader"] == "false"


def test_server_removed_while_running_stops(make_cluster):
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    gone = [a for a in agents if a is not leader][0]
    addr = f"127.0.0.1:{gone.rpc_port}"
    r = leader.api("DELETE", f"/v1/operator/raft/peer?address={addr}")
    assert r.status == 200, r
    rc = gone.proc.wait(30 * SLOW)
    assert rc == 1
    assert "was removed from the cluster" in gone.log()
    time.sleep(2 * SLOW)  # a few retry rounds: it must not come back
    assert len(peers(leader)) == 2


def test_join_config_errors(make_agent):
    import subprocess
    from conftest import BIN
    a = make_agent('server {\n  bootstrap_expect = 3\n}\n', start=False)
    r = subprocess.run([BIN, "agent", "-config", a.config_path],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 1
    assert "needs server.server_join.retry_join" in r.stderr
    b = make_agent('server {\n  server_join {\n    retry_join = '
                   '["db.example:4657"]\n  }\n}\n', name="b", start=False)
    r = subprocess.run([BIN, "agent", "-config", b.config_path],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 1
    assert '"db.example:4657" is not an IPv4 host:port' in r.stderr


def test_servers_take_raft_snapshots_in_turn(make_cluster):
    """Every server applies the same entries, so each waits its own
    multiple of the gate before its next raft snapshot: 1x for the voter
    with the lowest ID, 1.25x, 1.5x for the highest (8 x
    raft_snapshot_threshold = 400 entries here, with an interval that
    never opens the gate).  Their snapshots then never line up, as they
    would all start at the same index otherwise."""
    agents = make_cluster(3, 'server {\n  raft_snapshot_threshold = 50\n'
                             '  raft_snapshot_interval = "1h"\n}\n')
    leader = cluster_leader(agents)
    ids = {s["Address"]: int(s["ID"]) for s in peers(leader)}
    order = sorted(agents, key=lambda a: ids[f"127.0.0.1:{a.rpc_port}"])
    seen = {a.rpc_port: [] for a in agents}
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            r = leader.api("PUT", f"/v1/var/turn/{i % 50}",
                           {"Items": {"k": str(i)}})
            assert r.status == 200, r
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.time() + 60 * SLOW
        while min(len(v) for v in seen.values()) < 4:
            assert time.time() < deadline, seen
            for a in agents:
                idx = a.api("GET", "/v1/agent/health").json()["raft"][
                    "last_snapshot_index"]
                if idx and (not seen[a.rpc_port] or
                            seen[a.rpc_port][-1] != idx):
                    seen[a.rpc_port].append(idx)
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    for rank, a in enumerate(order):
        got = seen[a.rpc_port]
        gaps = [y - x for x, y in zip(got[1:], got[2:])]
        want = 400 * (1 + rank / 4)
        # A snapshot starts after the apply batch that crossed the gate.
        assert all(want <= g <= want + 20 for g in gaps), (rank, got, gaps)
