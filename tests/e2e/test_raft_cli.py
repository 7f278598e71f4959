"""`keyraft operator raft list-peers|remove-peer` against a real 3-server
cluster: the peer table from every server, removing a stopped follower,
and the exit codes for usage and server errors."""
import pytest

from conftest import cluster_leader

OK, ERROR, USAGE = 0, 1, 2
HEADER = ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]


def run(a, *args, rc=OK):
    r = a.cli(*args)
    assert r.returncode == rc, (args, r.returncode, r.stdout, r.stderr)
    return r


def peers(a, *flags):
    """list-peers on agent a, as a list of {column: cell} dicts."""
    r = run(a, "operator", "raft", "list-peers", *flags)
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == HEADER, lines
    rows = [dict(zip(HEADER, line.split())) for line in lines[1:]]
    assert all(len(row) == len(HEADER) for row in rows), lines
    return rows


def peer_of(rows, agent):
    """The row whose raft address is agent's RPC port."""
    mine = [r for r in rows if r["Address"].endswith(f":{agent.rpc_port}")]
    assert len(mine) == 1, (rows, agent.rpc_port)
    return mine[0]


@pytest.fixture
def cluster(make_cluster):
    agents = make_cluster(3)
    return agents, cluster_leader(agents)


def test_list_peers_from_every_server(cluster):
    agents, leader = cluster
    for a in agents:
        for flags in ((), ("-stale",)):
            rows = peers(a, *flags)
            assert len(rows) == 3, (a.rpc_port, flags, rows)
            # Sorted by Node, as nomad prints them.
            assert [r["Node"] for r in rows] == sorted(r["Node"]
                                                      for r in rows)
            assert [r["State"] for r in rows].count("leader") == 1, rows
            assert {r["State"] for r in rows} == {"leader", "follower"}
            assert all(r["Voter"] == "true" for r in rows), rows
            assert all(r["RaftProtocol"] == "3" for r in rows), rows
            assert peer_of(rows, leader)["State"] == "leader", rows
            assert len({r["ID"] for r in rows}) == 3, rows
            assert all(r["ID"].isdigit() for r in rows), rows


def test_remove_stopped_follower_by_address(cluster):
    agents, leader = cluster
    gone, other = [a for a in agents if a is not leader]
    address = peer_of(peers(leader), gone)["Address"]
    gone.stop()
    # Sent to the surviving follower, which forwards it to the leader.
    r = run(other, "operator", "raft", "remove-peer", "-peer-address",
            address)
    assert r.stdout.decode() == f'Removed peer with address "{address}"\n'
    assert r.stderr == b""
    for a in (leader, other):
        rows = peers(a)
        assert len(rows) == 2, rows
        assert address not in {row["Address"] for row in rows}
        assert [row["State"] for row in rows].count("leader") == 1, rows
    # Removing it again: the server's 404 message, exit 1.
    r = run(leader, "operator", "raft", "remove-peer",
            f"-peer-address={address}", rc=ERROR)
    assert r.stderr.decode() == (
        f"Error: peer {address} not found in the raft configuration\n")
    assert r.stdout == b""


def test_usage_and_server_errors(cluster):
    agents, leader = cluster
    a = agents[0]
    cases = [
        ((), "an address or id is required for the peer to remove"),
        (("-peer-id", ""), "an address or id is required"),
        (("-peer-id", "1", "-peer-address", "127.0.0.1:1"),
         "cannot give both an address and id"),
        (("-peer-id", "1", "extra"), "this command takes no arguments"),
        (("-bogus",), "-bogus"),
    ]
    for args, msg in cases:
        r = run(a, "operator", "raft", "remove-peer", *args, rc=USAGE)
        assert msg in r.stderr.decode(), (args, r.stderr)
        assert "Usage: keyraft operator raft remove-peer" in r.stderr.decode()
        assert r.stdout == b""
    r = run(a, "operator", "raft", "list-peers", "extra", rc=USAGE)
    assert "this command takes no arguments" in r.stderr.decode()
    r = run(a, "operator", "raft", "list-peers", "-stale=maybe", rc=USAGE)
    # -h lists the command's flags and the API variables.
    for cmd, flag in (("list-peers", "-stale"),
                      ("remove-peer", "-peer-address")):
        r = run(a, "operator", "raft", cmd, "-h")
        text = r.stdout.decode()
        assert f"Usage: keyraft operator raft {cmd}" in text
        assert flag in text and "-address" in text
        assert "KEYRAFT_ADDR" in text
    assert "-peer-id" in run(a, "operator", "raft", "remove-peer",
                             "-h").stdout.decode()
    # Unknown peers: the server's message and exit 1, nothing removed.
    r = run(a, "operator", "raft", "remove-peer", "-peer-id", "987654321",
            rc=ERROR)
    assert r.stderr.decode() == (
        "Error: peer 987654321 not found in the raft configuration\n")
    r = run(a, "operator", "raft", "remove-peer", "-peer-address",
            "127.0.0.1:1", rc=ERROR)
    assert "peer 127.0.0.1:1 not found in the raft configuration" in (
        r.stderr.decode())
    assert len(peers(leader)) == 3
    # An unreachable server is an error, not a usage error.
    r = a.cli("operator", "raft", "list-peers",
              env={"KEYRAFT_ADDR": "http://127.0.0.1:1"})
    assert r.returncode == ERROR, r
    assert "Error:" in r.stderr.decode()
