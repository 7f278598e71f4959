"""Snapshots end to end: save from a 3-server cluster (through a follower,
and stale), restore into a fresh server with every Variable identical;
redaction leaves no key the test can learn, raw or base64, while the
unredacted snapshot has them all (the control); bad archives are refused
with clear messages and change nothing; a restore while clients write
leaves exactly the snapshot plus the writes acknowledged after it."""
import base64
import collections
import gzip
import hashlib
import http.client
import io
import itertools
import json
import os
import struct
import tarfile
import threading
import time
import zlib

import pytest

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import SANITIZED, SLOW, cluster_leader

SNAP = "/v1/operator/snapshot"


# ---- reading archives and state.bin, from the documented formats ----

def members(archive):
    """{name: bytes} of a snapshot archive, in order."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}


class Reader:
    def __init__(self, b):
        self.b, self.off = b, 0

    def take(self, n):
        v = self.b[self.off:self.off + n]
        assert len(v) == n
        self.off += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def bytes(self):
        return self.take(self.u32())

    def str(self):
        return self.bytes().decode()

    def done(self):
        return self.off == len(self.b)


def records(state):
    assert state[:5] == b"KRST\x01"
    off = 5
    while off < len(state):
        t, n = state[off], struct.unpack_from("<I", state, off + 1)[0]
        yield t, state[off + 5:off + 5 + n]
        off += 5 + n


def blob(r):
    return {"ct": r.bytes(), "iv": r.bytes(), "mech": r.u64(),
            "key_id": r.str(), "wrapped_key": r.bytes()}


def parse_key(body):
    r = Reader(body)
    k = {"id": r.str(), "alg": r.str(), "create_time": r.take(8),
         "ci": r.u64(), "mi": r.u64(), "state": r.u8(), "pt": r.take(8)}
    k["wrapped"] = []
    for _ in range(r.u32()):
        k["wrapped"].append({"provider": r.str(), "provider_id": r.str(),
                             "dek": blob(r), "rsa": blob(r),
                             "kek": r.bytes()})
    k["rekey_total"] = r.u64() if not r.done() else 0
    k["flags"] = r.u8() if not r.done() else 0
    assert r.done()
    return k


def parse_var(body):
    r = Reader(body)
    v = {"ns": r.str(), "path": r.str(), "key_id": r.str(),
         "data": r.bytes()}
    r.take(32)
    assert r.done()
    return v


def state_of(archive):
    keys, vars_ = [], []
    for t, body in records(members(archive)["state.bin"]):
        if t == 2:
            keys.append(parse_key(body))
        elif t == 3:
            vars_.append(parse_var(body))
    return keys, vars_


def pack(meta, state, sums=None, extra=(), gz=True):
    """A gzip'd tar of meta.json, state.bin, SHA256SUMS (computed unless
    given) and any extra (name, bytes) members."""
    if isinstance(meta, dict):
        meta = json.dumps(meta, separators=(",", ":")).encode()
    if sums is None:
        sums = (f"{hashlib.sha256(meta).hexdigest()}  meta.json\n"
                f"{hashlib.sha256(state).hexdigest()}  state.bin\n").encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w",
                      format=tarfile.USTAR_FORMAT) as t:
        for name, data in [("meta.json", meta), ("state.bin", state),
                           ("SHA256SUMS", sums), *extra]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


# ---- cluster helpers ----

def fill(agents, small=150, big=24):
    """Variables written through every server in turn: small ones, some in
    another namespace, and big ones so the snapshot passes 1 MiB and takes
    the streaming paths.  Returns {(ns, path): items}."""
    want = {}
    for i in range(small + big):
        a = agents[i % len(agents)]
        ns = "other" if i % 10 == 3 else "default"
        path = f"app/{'big' if i >= small else 'small'}/{i:04d}"
        items = ({"blob": os.urandom(24000).hex()} if i >= small
                 else {"k": f"v{i}", "n": str(i)})
        a.put_var(path + f"?namespace={ns}", items)
        want[(ns, path)] = items
    return want


def read_all(a, stale=False):
    """Every Variable on a, whole: {(ns, path): the GET reply}; with
    stale, from a's own state."""
    q = "&stale" if stale else ""
    r = a.api("GET", "/v1/vars?namespace=*" + q)
    assert r.status == 200, r
    out = {}
    for m in r.json():
        g = a.api("GET", f"/v1/var/{m['Path']}?namespace={m['Namespace']}"
                  + q)
        assert g.status == 200, g
        out[(m["Namespace"], m["Path"])] = g.json()
    return out


def save(a, path, *flags):
    r = a.cli("operator", "snapshot", "save", *flags, str(path))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert b"State file written to" in r.stdout
    return open(path, "rb").read()


def inspect(a, path):
    r = a.cli("operator", "snapshot", "inspect", "-json", str(path))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def follower(agents):
    leader = cluster_leader(agents)
    return leader, [a for a in agents if a is not leader]


def test_save_from_cluster_restore_into_fresh_server(make_cluster, make_agent,
                                                     tmp_path):
    agents = make_cluster(3)
    leader, (f1, f2) = follower(agents)
    want = fill(agents)
    before = read_all(leader)
    assert {k: v["Items"] for k, v in before.items()} == want
    keys = leader.keys()

    # Raw GET on the leader: Digest is the SHA-256 of exactly these bytes.
    r = leader.api("GET", SNAP)
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/x-gzip"
    assert r.headers["Digest"] == "sha-256=" + base64.b64encode(
        hashlib.sha256(r.body).digest()).decode()
    assert len(r.body) > 1 << 20
    names = list(members(r.body))
    assert names == ["meta.json", "state.bin", "SHA256SUMS"]

    # Through a follower (relayed, streaming), and stale from the other.
    via = save(f1, tmp_path / "via-follower.snap")
    # Declining the Digest through a follower: it forwards Want-Digest,
    # and relays the leader's chunked answer chunked.
    r = f1.api("GET", SNAP, headers={"Want-Digest": "sha-256;q=0"})
    assert r.status == 200, r
    assert "Digest" not in r.headers and "Content-Length" not in r.headers
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert list(members(r.body)) == ["meta.json", "state.bin", "SHA256SUMS"]
    assert state_of(r.body) == state_of(via)
    # The relay's connection to the leader is clean for what comes next.
    for i in range(5):
        r = f1.api("GET", SNAP, headers={"Want-Digest": "sha-256;q=0"})
        assert r.status == 200 and state_of(r.body) == state_of(via), r
        w = f1.api("PUT", f"/v1/var/after/relay{i}", {"Items": {"i": str(i)}})
        assert w.status == 200, w
        leader.api("DELETE", f"/v1/var/after/relay{i}")
    stale = save(f2, tmp_path / "stale.snap", "-stale")
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    for snap in (via, stale):
        meta = json.loads(members(snap)["meta.json"])
        assert meta["Version"] == 1
        assert meta["ID"] == f"{meta['Term']}-{meta['Index']}-" + \
            meta["ID"].split("-")[2]
        assert meta["Size"] == len(members(snap)["state.bin"])
        assert sorted(s["Address"] for s in
                      meta["Configuration"]["Servers"]) == \
            sorted(f"127.0.0.1:{a.rpc_port}" for a in agents)
    info = inspect(f1, tmp_path / "via-follower.snap")
    assert info["RootKeys"] == 1 and info["RedactedKeys"] == 0
    stats = {s["Name"]: s["Count"] for s in info["Stats"]}
    assert stats["Variable"] == len(want)
    assert stats["RootKey"] == 1

    fresh = make_agent(name="fresh")
    fresh.put_var("only/here", {"x": "y"})
    r = fresh.cli("operator", "snapshot", "restore",
                  str(tmp_path / "via-follower.snap"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Snapshot Restored\n"
    after = read_all(fresh)
    # Every Variable identical: Items, indexes and times.
    assert after == before
    assert [{k: v for k, v in x.items()} for x in fresh.keys()] == keys
    # The server took the restored keys: writes go on under them.
    fresh.put_var("after/restore", {"a": "b"})
    assert fresh.get_var("after/restore")["Items"] == {"a": "b"}


def learn_keys(archive):
    """Every secret the test can learn from an unredacted snapshot: each
    aead KEK is in state.bin in the clear, it unwraps the DEK and RSA
    blobs, and each DEK is shown right by decrypting a Variable."""
    keys, vars_ = state_of(archive)
    secrets = []
    for k in keys:
        assert k["wrapped"], k["id"]
        for w in k["wrapped"]:
            assert w["provider"] == "aead" and len(w["kek"]) == 32
            gcm = AESGCM(w["kek"])
            dek = gcm.decrypt(w["dek"]["ct"][:12], w["dek"]["ct"][12:], None)
            rsa = gcm.decrypt(w["rsa"]["ct"][:12], w["rsa"]["ct"][12:], None)
            assert len(dek) == 32 and rsa[:2] == b"\x30\x82"
            mine = [v for v in vars_ if v["key_id"] == k["id"]]
            assert mine, k["id"]
            items = json.loads(AESGCM(dek).decrypt(
                mine[0]["data"][:12], mine[0]["data"][12:], k["id"].encode()))
            assert items
            secrets += [("kek", w["kek"]), ("dek", dek), ("rsa", rsa),
                        ("wrapped dek", w["dek"]["ct"]),
                        ("wrapped rsa", w["rsa"]["ct"])]
    return keys, secrets


def encodings(b):
    return [("raw", b), ("base64", base64.b64encode(b)),
            ("base64url", base64.urlsafe_b64encode(b).rstrip(b"=")),
            ("base64 unpadded", base64.b64encode(b).rstrip(b"=")),
            ("hex", b.hex().encode())]


def found(haystack, secrets):
    return {(name, enc) for name, s in secrets for enc, e in encodings(s)
            if e in haystack}


def test_save_while_clients_write_is_one_index(make_agent, tmp_path):
    """A save of a state big enough that its freeze takes many loop turns
    (the copy runs in 0.2 ms slices), while a client creates, overwrites
    and deletes Variables that sort after all the others (the copy
    reaches them last): the archive is the state at one index, so the
    creations form a prefix that agrees with the counter, and so do the
    deletions."""
    from test_lifecycle import pipeline, var_body
    a = make_agent()
    n_bulk = 20_000 if SANITIZED else 60_000
    reqs = [("PUT", f"/v1/var/bulk/{i:06d}", var_body(f"b{i}"))
            for i in range(n_bulk)]
    reqs += [("PUT", f"/v1/var/del/{i:05d}", var_body("d")) for i in range(500)]
    assert all(st == 200 for st, _ in pipeline(a.http_port, reqs))

    stop = threading.Event()
    done = []

    def writer():
        c = http.client.HTTPConnection("127.0.0.1", a.http_port,
                                       timeout=30 * SLOW)

        def call(method, path, items=None):
            body = json.dumps({"Items": items}) if items else None
            c.request(method, "/v1/var/" + path, body=body)
            r = c.getresponse()
            r.read()
            assert r.status in (200, 204), (method, path, r.status)

        i = 0
        while not stop.is_set() and i < 500:
            call("PUT", f"seq/{i:05d}", {"v": str(i)})
            call("PUT", "counter", {"v": str(i)})
            call("DELETE", f"del/{i:05d}")
            call("PUT", "delcount", {"v": str(i)})
            i += 1
        done.append(i)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.2)
    save(a, tmp_path / "busy.snap")
    stop.set()
    t.join()
    assert done and done[0] > 0

    b = make_agent(name="fresh")
    r = b.cli("operator", "snapshot", "restore", str(tmp_path / "busy.snap"))
    assert r.returncode == 0, r.stderr

    def paths(prefix):
        r = b.api("GET", f"/v1/vars?prefix={prefix}")
        assert r.status == 200, r
        return sorted(m["Path"] for m in r.json())

    def counter(name):
        r = b.api("GET", f"/v1/var/{name}")
        return int(r.json()["Items"]["v"]) if r.status == 200 else -1

    assert len(paths("bulk/")) == n_bulk
    c, d = counter("counter"), counter("delcount")
    seq = paths("seq/")
    # seq/i comes before counter = i; del/i goes before delcount = i.
    assert seq == [f"seq/{i:05d}" for i in range(len(seq))], seq[:5]
    assert len(seq) - 1 in (c, c + 1), (len(seq), c)
    left = paths("del/")
    first = 500 - len(left)
    assert left == [f"del/{i:05d}" for i in range(first, 500)]
    assert first in (d + 1, d + 2), (first, d)


def test_redacted_snapshot_has_no_key_material(make_agent, tmp_path):
    a = make_agent()
    for i in range(20):
        a.put_var(f"one/{i}", {"secret": f"s{i}"})
    a.rotate("?now")
    for i in range(20):
        a.put_var(f"two/{i}", {"secret": f"t{i}"})
    plain = save(a, tmp_path / "plain.snap")
    red = save(a, tmp_path / "red.snap", "-redact")
    inplace = tmp_path / "inplace.snap"
    inplace.write_bytes(plain)
    r = a.cli("operator", "snapshot", "redact", str(inplace))
    assert r.returncode == 0, r.stderr
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    redacted = inplace.read_bytes()

    keys, secrets = learn_keys(plain)
    assert len(keys) == 2 and len(secrets) == 10
    # The control: the scan finds every KEK and wrapped blob, raw and in
    # each encoding, in the unredacted snapshot's decompressed bytes (the
    # DEK and RSA key are in no snapshot in the clear: they are wrapped).
    tar_plain = gzip.decompress(plain)
    wrapped = [s for s in secrets if s[0] in ("kek", "wrapped dek",
                                                "wrapped rsa")]
    raw_found = {(n, e) for n, e in found(tar_plain, wrapped) if e == "raw"}
    assert raw_found == {(n, "raw") for n, _ in wrapped}
    assert not found(tar_plain, [s for s in secrets
                                 if s[0] in ("dek", "rsa")])
    # The snapshot is binary, so its secrets appear raw; the encoded forms
    # are scanned for too, and the scanner is shown to catch each one.
    for name, sec in secrets:
        for enc, e in encodings(sec):
            assert (name, enc) in found(b"<" + e + b">", [(name, sec)])
    for snap in (red, redacted):
        tar = gzip.decompress(snap)
        assert not found(tar, secrets), found(tar, secrets)
        assert not found(snap, secrets)
        rkeys, rvars = state_of(snap)
        assert [k["id"] for k in rkeys] == [k["id"] for k in keys]
        assert all(k["wrapped"] == [] and k["flags"] == 1 for k in rkeys)
        assert len(rvars) == 40
    for p in ("red.snap", "inplace.snap"):
        info = inspect(a, tmp_path / p)
        assert info["RootKeys"] == 2 and info["RedactedKeys"] == 2

    # A redacted snapshot restores cleanly; its keys are listed redacted,
    # their Variables fail with an error naming the key, and rotate -now
    # lets writes go on.
    b = make_agent(name="target")
    r = b.cli("operator", "snapshot", "restore", str(tmp_path / "red.snap"))
    assert r.returncode == 0, r.stderr
    listed = b.keys()
    assert [k["KeyID"] for k in listed] == [k["id"] for k in keys]
    assert all(k["Redacted"] is True for k in listed)
    out = b.cli("operator", "root", "keyring", "list").stdout.decode()
    assert "active (redacted)" in out and "inactive (redacted)" in out
    old = b.api("GET", "/v1/var/one/1")
    assert old.status == 500
    assert keys[0]["id"] in old.text and "redacted" in old.text
    w = b.api("PUT", "/v1/var/new/one", {"Items": {"a": "b"}})
    assert w.status == 500 and "rotate" in w.text
    h = b.api("GET", "/v1/agent/health")
    assert h.status == 500
    assert sorted(h.json()["keyring"]["redacted_keys"]) == \
        sorted(k["id"] for k in keys)
    r = b.cli("operator", "root", "keyring", "rotate", "-now")
    assert r.returncode == 0, r.stderr
    b.put_var("new/one", {"a": "b"})
    assert b.get_var("new/one")["Items"] == {"a": "b"}
    assert b.api("GET", "/v1/var/two/3").status == 500
    assert b.api("GET", "/v1/agent/health").status == 200
    # The CLI's own error for a redacted Variable names the key too.
    r = b.cli("var", "get", "two/3")
    assert r.returncode == 1 and keys[1]["id"].encode() in r.stderr


def bomb(meta, declared):
    """A tar whose state.bin header declares `declared` bytes, followed by
    64 MiB of zeros, gzip'd: a few tens of KiB that inflate to 64 MiB and
    claim far more."""
    meta = json.dumps(meta, separators=(",", ":")).encode()
    head = io.BytesIO()
    with tarfile.open(fileobj=head, mode="w", format=tarfile.USTAR_FORMAT) \
            as t:
        info = tarfile.TarInfo("meta.json")
        info.size, info.mode = len(meta), 0o600
        t.addfile(info, io.BytesIO(meta))
    tar = head.getvalue()
    tar = tar[:512 + (len(meta) + 511) // 512 * 512]
    hdr = bytearray(tarfile.TarInfo("state.bin").tobuf(tarfile.USTAR_FORMAT))
    hdr[124:136] = b"%011o\0" % declared
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = z.compress(tar + bytes(hdr))
    zeros = bytes(1 << 20)
    for _ in range(64):
        out += z.compress(zeros)
    return out + z.flush()


def vm_hwm_kb(a):
    with open(f"/proc/{a.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


BIG_N, BIG_SIZE = 4200, 48 * 1024


def big_snapshot(a, tmp_path):
    """Loads BIG_N Variables of BIG_SIZE random hex into a and saves them:
    about 200 MB of state.bin.  Returns the file's path and that size."""
    from test_lifecycle import pipeline
    reqs = [("PUT", f"/v1/var/big/{i:05d}",
             json.dumps({"Items": {"v": os.urandom(BIG_SIZE // 2).hex()}})
             .encode()) for i in range(BIG_N)]
    assert all(st == 200 for st, _ in pipeline(a.http_port, reqs,
                                               conns=8, window=4))
    path = tmp_path / "big.snap"
    save(a, path)
    state_bin = inspect(a, path)["Meta"]["Size"]
    assert state_bin > 190 << 20, state_bin
    return path, state_bin


def health(a):
    r = a.api("GET", "/v1/agent/health")
    assert r.status in (200, 429, 503), r
    return r.json()


def health_raft(a):
    r = a.api("GET", "/v1/agent/health")
    assert r.status in (200, 429, 503), r
    return r.json()["raft"]


@pytest.mark.skipif(SANITIZED, reason="ASan's shadow memory makes RSS "
                    "meaningless; test_restore.c covers the views of a "
                    "stage under ASan")
def test_restore_does_not_keep_its_chunks_in_memory(make_agent, tmp_path):
    """A restore of about 200 MB of state.bin into a fresh server: raft
    snapshots the stage as its chunks come (every time the log since the
    last one reaches half the state), so libraft lets the applied 1 MiB
    chunks go, and the server's peak RSS stays well under the state.bin
    in the log plus the state built from it.  Before, all of state.bin
    stayed in libraft's log next to that state."""
    a = make_agent()
    n, size = BIG_N, BIG_SIZE
    path, state_bin = big_snapshot(a, tmp_path)

    b = make_agent(name="b")
    taken = health_raft(b)["snapshots_taken"]
    r = b.cli("operator", "snapshot", "restore", str(path))
    assert r.returncode == 0, r.stderr
    raft = health_raft(b)
    # 64 MiB, 128 MiB: two snapshots of the stage at least.
    assert raft["snapshots_taken"] >= taken + 2, raft
    peak = vm_hwm_kb(b) * 1024
    # The state (its records plus the tree, about 1.05x here) and the
    # chunks since the last snapshot of the stage (under 100 MiB) plus
    # the server itself: 1.67-1.78x over runs.  The goal is under 2x;
    # keeping every chunk was 2.35x.
    assert peak < 2 * state_bin, (peak, state_bin)
    for i in (0, n // 2, n - 1):
        got = b.get_var(f"big/{i:05d}")
        assert len(got["Items"]["v"]) == size, i
    print(f"restore of {state_bin >> 20} MiB of state.bin: peak RSS "
          f"{peak >> 20} MiB = {peak / state_bin:.2f}x, "
          f"{raft['snapshots_taken'] - taken} raft snapshots")


@pytest.mark.skipif(SANITIZED, reason="200 MB through three ASan "
                    "servers is too slow; test_restore.c covers the views "
                    "of a stage under ASan")
def test_follower_catches_up_from_a_raft_snapshot_of_a_stage(
        make_agent, make_cluster, tmp_path):
    """A follower that is down while a big restore is staged comes back
    before the commit.  The leader has snapshotted the stage and kept
    only 32 MiB of log behind it, so the follower gets that raft snapshot
    (streamed from the stage's Variables), then the remaining chunks and
    the commit from the log, and ends with exactly the restored state."""
    src = make_agent(name="src")
    path, state_bin = big_snapshot(src, tmp_path)
    want = {p: src.get_var(f"big/{p:05d}")["Items"]
            for p in range(0, BIG_N, 97)}
    src.stop()
    agents = make_cluster(3)
    leader, (late, _) = follower(agents)
    late.stop()
    body = open(path, "rb").read()
    taken = health_raft(leader)["snapshots_taken"]
    result = {}

    def put():
        c = http.client.HTTPConnection("127.0.0.1", leader.http_port,
                                       timeout=120 * SLOW)
        c.request("PUT", SNAP, body=body)
        r = c.getresponse()
        result["status"], result["body"] = r.status, r.read()

    t = threading.Thread(target=put)
    t.start()
    deadline = time.time() + 60 * SLOW
    while True:
        h = health(leader)
        r = h.get("restore")
        if (r and r["received_bytes"] > r["total_bytes"] * 0.6 and
                h["raft"]["snapshots_taken"] >= taken + 2):
            break
        assert t.is_alive() and time.time() < deadline, (
            "the restore ended before the follower could come back", h)
        time.sleep(0.01)
    late.start(wait=False)
    t.join()
    assert result["status"] == 200, result
    late.wait_ready(timeout=60 * SLOW)
    # Ready is its own log replayed; the leader's snapshot may come after.
    deadline = time.time() + 30 * SLOW
    while True:
        r = late.api("GET", "/v1/vars?prefix=big&stale")
        if r.status == 200 and len(r.json()) == BIG_N:
            break
        assert time.time() < deadline, (r.status, len(r.json() or []))
        time.sleep(0.2)
    assert "with a restore staged in it" in late.log(), late.log()[-3000:]
    for p, items in want.items():
        assert late.get_var(f"big/{p:05d}", "?stale")["Items"] == items, p


def test_bad_archives_change_nothing(make_cluster, tmp_path):
    agents = make_cluster(3)
    leader, (f1, f2) = follower(agents)
    fill(agents, small=60, big=0)
    small_snap = save(leader, tmp_path / "small.snap")
    small_vars = read_all(leader)
    fill(agents, small=60, big=24)
    good = save(leader, tmp_path / "good.snap")
    good_vars = read_all(leader)
    m = members(good)
    meta, state = json.loads(m["meta.json"]), m["state.bin"]
    # Writes after the save: a restore would undo them.
    leader.put_var("later/one", {"x": "1"})
    before = read_all(leader)
    keys = leader.keys()

    tampered = bytearray(state)
    tampered[-100] ^= 1
    cases = [
        ("truncated", good[:len(good) // 2], "invalid snapshot archive"),
        ("trailing bytes", good + b"\0" * 1000,
         "1000 bytes follow the gzip stream"),
        ("tampered", pack(m["meta.json"], bytes(tampered), m["SHA256SUMS"]),
         "state.bin does not match its checksum"),
        ("extra member", pack(m["meta.json"], state,
                              extra=[("notes.txt", b"hi")]),
         'unexpected file "notes.txt"'),
        ("wrong version", pack(dict(meta, Version=2), state),
         "snapshot archive version 2 is not supported"),
        ("missing member", pack_two(m), "SHA256SUMS is missing"),
        ("not gzip", pack(m["meta.json"], state, gz=False),
         "not gzip-compressed"),
        ("gzip bomb", bomb(dict(meta, Size=3 << 30), 3 << 30),
         "more than the"),
        ("bomb under the cap", bomb(dict(meta, Size=512 << 20), 512 << 20),
         "invalid snapshot archive: state.bin: not a keyraft state"),
    ]
    hwm = vm_hwm_kb(leader)
    for name, data, msg in cases:
        path = tmp_path / f"bad-{name.replace(' ', '-')}.snap"
        path.write_bytes(data)
        start = time.time()
        r = f1.cli("operator", "snapshot", "restore", str(path))
        err = r.stderr.decode()
        assert r.returncode == 1, (name, r.stdout, err)
        assert msg in err, (name, err)
        assert time.time() - start < 15 * SLOW, name
    # The bombs were never inflated on the server.
    assert vm_hwm_kb(leader) - hwm < 200 * 1024
    # Zero bytes: the CLI says so, and so does the server.
    (tmp_path / "empty.snap").write_bytes(b"")
    r = f2.cli("operator", "snapshot", "restore", str(tmp_path / "empty.snap"))
    assert r.returncode == 1 and b"empty" in r.stderr
    r = f2.api("PUT", SNAP, b"")
    assert r.status == 400 and "snapshot archive is empty" in r.text
    # Nothing changed anywhere: every Variable, the keys, on every server.
    assert read_all(leader) == before
    assert leader.keys() == keys
    for a in (f1, f2):
        assert {k: v["Items"] for k, v in read_all(a, stale=True).items()} \
            == {k: v["Items"] for k, v in before.items()}

    # A small archive on a keep-alive connection goes through h2o (the
    # second request of the connection), forwarded by a follower.
    c = http.client.HTTPConnection("127.0.0.1", f2.http_port,
                                   timeout=30 * SLOW)
    c.request("GET", "/v1/agent/health")
    c.getresponse().read()
    assert len(small_snap) < 1 << 20
    c.request("PUT", SNAP, body=small_snap)
    resp = c.getresponse()
    assert resp.status == 200, resp.read()
    assert int(resp.getheader("X-Nomad-Index")) > 0
    c.close()
    assert read_all(leader) == small_vars

    # The big one through a follower: streamed to it, then to the leader.
    assert len(good) > 1 << 20
    r = f1.cli("operator", "snapshot", "restore", str(tmp_path / "good.snap"))
    assert r.returncode == 0, r.stderr
    assert read_all(leader) == good_vars


def pack_two(m):
    """meta.json and state.bin only."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz",
                      format=tarfile.USTAR_FORMAT) as t:
        for name in ("meta.json", "state.bin"):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(m[name]), 0o600
            t.addfile(info, io.BytesIO(m[name]))
    return out.getvalue()


def test_restore_while_clients_write(make_cluster, tmp_path):
    """Afterwards the state is exactly the snapshot plus every write that
    was acknowledged with an index after the restore's (the commit is alone
    at its index), in index order; nothing else."""
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    for i in range(80):
        agents[i % 3].put_var(f"base/{i:03d}", {"v": f"snap{i}"})
    snap = save(leader, tmp_path / "s.snap")
    expected = {k: v["Items"] for k, v in read_all(leader).items()}
    # A new active key: writes in flight are sealed with a key the
    # restored state does not have.
    leader.rotate("?now")

    acks, stop = [], threading.Event()
    lock = threading.Lock()

    def writer(t, a):
        c = http.client.HTTPConnection("127.0.0.1", a.http_port,
                                       timeout=30 * SLOW)
        n = 0
        while not stop.is_set():
            path = f"base/{n % 80:03d}" if n % 2 else f"w/{t}/{n}"
            items = {"v": f"{t}-{n}"}
            try:
                c.request("PUT", f"/v1/var/{path}",
                          body=json.dumps({"Items": items}))
                r = c.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", a.http_port,
                                               timeout=30 * SLOW)
                continue
            if r.status == 200:
                with lock:
                    acks.append((json.loads(body)["ModifyIndex"],
                                 ("default", path), items))
            n += 1

    threads = [threading.Thread(target=writer, args=(i, a))
               for i, a in enumerate(agents)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    c = http.client.HTTPConnection("127.0.0.1", leader.http_port,
                                   timeout=60 * SLOW)
    c.request("PUT", SNAP, body=snap)
    resp = c.getresponse()
    assert resp.status == 200, resp.read()
    restore_index = int(resp.getheader("X-Nomad-Index"))
    c.close()
    # Writes go on after the restore (the first ones wait for the keyring
    # to decrypt the restored keys): until a few are in.
    deadline = time.time() + 20 * SLOW
    while time.time() < deadline:
        with lock:
            after = sum(1 for i, _, _ in acks if i > restore_index)
        if after >= 30:
            break
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()

    assert any(i < restore_index for i, _, _ in acks)
    assert any(i > restore_index for i, _, _ in acks), "no write after"
    assert not [a for a in acks if a[0] == restore_index]
    # Two writes of one Variable never share an index (the leader's batch
    # sends the second in a raft entry of its own), so the order below is
    # the order they were applied in.
    same = collections.Counter((i, key) for i, key, _ in acks)
    assert not [k for k, c in same.items() if c > 1], same.most_common(3)
    for idx, key, items in sorted(acks, key=lambda a: a[0]):
        if idx > restore_index:
            expected[key] = items
    got = read_all(leader)
    assert {k: v["Items"] for k, v in got.items()} == expected
    last = {}
    for idx, key, _ in acks:
        if idx > restore_index:
            last[key] = max(idx, last.get(key, 0))
    for key, idx in last.items():
        assert got[key]["ModifyIndex"] == idx
    # Every server converges on the same state.
    deadline = time.time() + 10 * SLOW
    for a in agents:
        while True:
            mine = {k: v["Items"] for k, v in read_all(a, stale=True).items()}
            if mine == expected or time.time() > deadline:
                break
            time.sleep(0.2)
        assert mine == expected


def test_leader_killed_mid_restore(make_cluster, tmp_path):
    """kill -9 the leader while it stages a restore: the survivors keep
    either the old state or, had the commit made it, the new one, never
    a mix; the new leader drops the stage left behind, a restore through
    it works, and the killed server, restarted, agrees.  If the kill
    lands before the stage is replicated or after the commit, it tries
    again with a bigger snapshot (up to three times) rather than pass
    without catching it midway."""
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    caught = None
    for attempt in range(3):
        for i in range(150 * (attempt + 1)):
            leader.put_var(f"snap/{i:04d}", {"v": os.urandom(24000).hex()})
        snap = save(leader, tmp_path / f"s{attempt}.snap")
        new_state = {k: v["Items"] for k, v in read_all(leader).items()}
        for i in range(0, 150 * (attempt + 1), 7):
            leader.put_var(f"snap/{i:04d}", {"v": "changed"})
        leader.put_var(f"after/{attempt}", {"v": "x"})
        old_state = {k: v["Items"] for k, v in read_all(leader).items()}

        def put():
            c = http.client.HTTPConnection("127.0.0.1", leader.http_port,
                                           timeout=30 * SLOW)
            try:
                c.request("PUT", SNAP, body=snap)
                c.getresponse().read()
            except (OSError, http.client.HTTPException):
                pass

        t = threading.Thread(target=put)
        t.start()
        # Kill once a follower has applied part of the stage (its health
        # says how far it has got), so a stage is left behind.
        follower = next(a for a in agents if a is not leader)
        deadline = time.time() + 30 * SLOW
        while True:
            st = follower.api("GET", "/v1/agent/health").json()
            r = st.get("restore")
            if r and 0 < r["received_bytes"] < r["total_bytes"]:
                break
            if not t.is_alive() or time.time() > deadline:
                break      # done (or failed) before it could be caught
            time.sleep(0.002)
        leader.kill9()
        t.join()
        survivors = [a for a in agents if a is not leader]
        new_leader = cluster_leader(survivors, timeout=15)
        got = {k: v["Items"] for k, v in read_all(new_leader).items()}
        assert got in (old_state, new_state), "a mix of old and new"
        deadline = time.time() + 15 * SLOW
        dropped = False
        while time.time() < deadline and got == old_state:
            dropped = any("left staged by an earlier leader" in a.log()
                          for a in survivors)
            if dropped:
                break
            time.sleep(0.1)
        leader.start(wait=False)
        leader.wait_ready(timeout=60)
        cluster_leader(agents)
        if dropped:
            caught = (attempt, len(snap))
            break
        leader = cluster_leader(agents)
    assert caught, "the kill never landed while the restore was staged"

    # The stage is gone: a restore through the new leader works, and
    # every server, the restarted one too, ends with the snapshot's state.
    new_leader = cluster_leader(agents)
    r = new_leader.cli("operator", "snapshot", "restore", str(
        tmp_path / f"s{caught[0]}.snap"))
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 20 * SLOW
    for a in agents:
        while True:
            try:
                mine = {k: v["Items"]
                        for k, v in read_all(a, stale=True).items()}
            except AssertionError:
                # The restore's commit applied on a between the list and
                # a read of what it listed (a 404): read again.
                mine = None
            if mine == new_state or time.time() > deadline:
                break
            time.sleep(0.2)
        assert mine == new_state


def test_rekey_with_a_redacted_key_never_finishes(make_agent, tmp_path):
    """A full rekey whose rekeying key is redacted cannot read that key's
    Variables: the job reports the key, keeps retrying, and never marks it
    done; removing the key with force ends the rekey."""
    a = make_agent()
    for i in range(5):
        a.put_var(f"old/{i}", {"v": str(i)})
    save(a, tmp_path / "r.snap", "-redact")
    r = a.cli("operator", "snapshot", "restore", str(tmp_path / "r.snap"))
    assert r.returncode == 0, r.stderr
    (old,) = [k["KeyID"] for k in a.keys()]
    new = a.rotate("?full=true")["KeyID"]
    deadline = time.time() + 15 * SLOW
    while True:
        st = a.api("GET", "/v1/operator/keyring/rekey").json()
        if "redacted" in st["Error"] or time.time() > deadline:
            break
        time.sleep(0.1)
    assert st["Running"] and old in st["Error"] and "redacted" in st["Error"]
    assert [(k["KeyID"], k["Remaining"]) for k in st["Keys"]] == [(old, 5)]
    time.sleep(2.5)
    states = {k["KeyID"]: k["State"] for k in a.keys()}
    assert states == {old: "rekeying", new: "active"}
    # Writes go on under the new key meanwhile.
    a.put_var("new/one", {"v": "x"})
    r = a.api("DELETE", f"/v1/operator/keyring/key/{old}?force=true")
    assert r.status == 200, r
    st = a.api("GET", "/v1/operator/keyring/rekey").json()
    assert not st["Running"] and st["Keys"] == []


def _open_download(a):
    """A GET of the snapshot on a raw socket, read up to its headers and
    a little of the body: (socket, headers, first body bytes)."""
    import socket
    s = socket.create_connection(("127.0.0.1", a.http_port), timeout=30 * SLOW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(f"GET {SNAP} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s, head.decode(), body


def test_save_streams_and_survives_clients_that_go_away(make_agent, tmp_path):
    """The archive is encoded twice from the frozen view (once for the
    Digest, once as it is sent) and never written on the server: the
    Digest names the bytes that arrive; clients that hang up mid-download
    free their save (more of them than the two saves a server runs at
    once), a client that stalls while others overwrite every Variable
    still gets the state as of its request, and the server stops cleanly
    with a stalled download open."""
    from test_lifecycle import pipeline, var_body
    a = make_agent()
    n = 8_000 if SANITIZED else 30_000
    reqs = [("PUT", f"/v1/var/s/{i:06d}", var_body(f"v{i}-" + "x" * 200))
            for i in range(n)]
    assert all(st == 200 for st, _ in pipeline(a.http_port, reqs))

    for _ in range(4):  # hang up after the first bytes
        s, _, _ = _open_download(a)
        s.close()
    deadline = time.time() + 20 * SLOW
    while True:  # every abandoned save has let its slot go
        r = a.api("GET", SNAP)
        if r.status == 200 or time.time() > deadline:
            break
        assert r.status == 503, r
        time.sleep(0.1)
    assert r.status == 200, r
    digest = r.headers["Digest"]
    assert digest == "sha-256=" + base64.b64encode(
        hashlib.sha256(r.body).digest()).decode()
    assert int(r.headers["Content-Length"]) == len(r.body)

    # A stalled download while every Variable is overwritten: it gets the
    # state as of its request, and its Digest holds.
    s, head, body = _open_download(a)
    length = int([h.split(":", 1)[1] for h in head.split("\r\n")
                  if h.lower().startswith("content-length:")][0])
    want = [h.split(":", 1)[1].strip() for h in head.split("\r\n")
            if h.lower().startswith("digest:")][0]
    reqs = [("PUT", f"/v1/var/s/{i:06d}", var_body(f"new{i}"))
            for i in range(n)]
    assert all(st == 200 for st, _ in pipeline(a.http_port, reqs))
    while len(body) < length:
        chunk = s.recv(1 << 20)
        assert chunk, (len(body), length)
        body += chunk
    s.close()
    assert len(body) == length
    assert want == "sha-256=" + base64.b64encode(
        hashlib.sha256(body).digest()).decode()
    (tmp_path / "stalled.snap").write_bytes(body)
    b = make_agent(name="fresh")
    r = b.cli("operator", "snapshot", "restore", str(tmp_path / "stalled.snap"))
    assert r.returncode == 0, r.stderr
    for i in (0, n // 2, n - 1):
        got = b.get_var(f"s/{i:06d}")
        assert got["Items"] == json.loads(var_body(
            f"v{i}-" + "x" * 200))["Items"], got
    b.stop()

    # A stop with a download stalled mid-body still exits cleanly; while
    # it is stalled the server holds no file of the archive (a temporary
    # file in the data dir shows in /proc as "(deleted)").
    s, _, _ = _open_download(a)
    fds = f"/proc/{a.proc.pid}/fd"
    held = []
    for fd in os.listdir(fds):
        try:
            held.append(os.readlink(os.path.join(fds, fd)))
        except OSError:
            pass
    assert not [f for f in held if f.startswith(a.data_dir) and
                f.endswith("(deleted)")], held
    start = time.time()
    a.stop(timeout=40)
    s.close()
    assert time.time() - start < 35 * SLOW


class _ArchiveServer:
    """Plain HTTP on a loopback port that answers every GET with the given
    bytes, chunked and with no Digest: what a keyraft server that honours
    Want-Digest: sha-256;q=0 sends.  It stands in for a server whose
    archive was damaged on the way; it keeps each request's headers."""

    def __init__(self, body):
        import http.server

        outer = self
        self.body = body
        self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.seen.append((self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-gzip")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("X-Nomad-Index", "7")
                self.end_headers()
                for i in range(0, len(outer.body), 65536):
                    part = outer.body[i:i + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join()


def test_save_declines_the_digest_and_checks_what_arrives(make_agent,
                                                         tmp_path):
    """Want-Digest: sha-256;q=0 gets the archive streamed as it is encoded
    (chunked, no Digest, one encoding pass); the CLI asks for that and
    instead holds the archive to its own SHA256SUMS as it arrives, so a
    damaged download is refused and the target file stays as it was.
    Anything but a clear decline keeps the Digest."""
    a = make_agent()
    for i in range(500):
        a.put_var(f"d/{i:04d}", {"v": f"{i}-" + "y" * 3000})

    r = a.api("GET", SNAP, headers={"Want-Digest": "sha-256;q=0"})
    assert r.status == 200, r
    assert "Digest" not in r.headers
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in r.headers
    assert list(members(r.body)) == ["meta.json", "state.bin", "SHA256SUMS"]
    good = r.body
    assert len(good) > 1 << 20
    info = json.loads(members(good)["meta.json"])
    assert info["Size"] == len(members(good)["state.bin"])
    for v in ("sha-256;q=zero", "sha-256;q=0.5", "sha-256", "md5;q=0",
              "sha-256;q=0;", ""):
        r = a.api("GET", SNAP, headers={"Want-Digest": v})
        assert r.status == 200, (v, r)
        assert r.headers["Digest"] == "sha-256=" + base64.b64encode(
            hashlib.sha256(r.body).digest()).decode(), v
        assert int(r.headers["Content-Length"]) == len(r.body), v

    # The CLI against a server that sends no Digest: a good archive is
    # saved as it came, and the CLI asked to go without the Digest.
    target = tmp_path / "t.snap"
    with _ArchiveServer(good) as srv:
        r = a.cli("operator", "snapshot", "save", str(target),
                  env={"KEYRAFT_ADDR": srv.url})
        assert r.returncode == 0, r.stderr
        assert srv.seen[0][0] == SNAP
        assert {k.lower(): v for k, v in srv.seen[0][1].items()}[
            "want-digest"] == "sha-256;q=0"
    assert target.read_bytes() == good

    # Damaged on the way: a byte of state.bin changed, the end cut off,
    # or a member too many.  Each is refused and the target untouched.
    m = members(good)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    variants = {
        "flipped": bytes(flipped),
        "truncated": good[:len(good) * 2 // 3],
        "trailing": good + os.urandom(3000),
        "extra": pack(m["meta.json"], m["state.bin"],
                      sums=m["SHA256SUMS"], extra=[("more.bin", b"x")]),
        "other sums": pack(m["meta.json"], m["state.bin"],
                           sums=m["SHA256SUMS"].replace(b"0", b"1", 1)),
    }
    target.write_bytes(b"the old file")
    for (name, body), flags in itertools.product(variants.items(),
                                                 ([], ["-redact"])):
        with _ArchiveServer(body) as srv:
            r = a.cli("operator", "snapshot", "save", *flags, str(target),
                      env={"KEYRAFT_ADDR": srv.url})
        assert r.returncode == 1, (name, flags, r.stdout)
        assert b"the snapshot that arrived is damaged" in r.stderr, \
            (name, flags, r.stderr)
        assert target.read_bytes() == b"the old file", (name, flags)
        assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p], name

    # -redact redacts as the archive arrives, also with no Digest.
    with _ArchiveServer(good) as srv:
        r = a.cli("operator", "snapshot", "save", "-redact", str(target),
                  env={"KEYRAFT_ADDR": srv.url})
        assert r.returncode == 0, r.stderr
    info = inspect(a, target)
    assert info["RootKeys"] == 1 and info["RedactedKeys"] == 1
    keys, vars_ = state_of(target.read_bytes())
    assert len(vars_) == 500
    assert all(k["wrapped"] == [] and k["flags"] == 1 for k in keys)
    assert vars_ == state_of(good)[1]


def test_restore_from_a_client_that_shuts_its_side(make_agent, tmp_path):
    """A client may shut its side of the connection once the body is out
    (shutdown(SHUT_WR)) and wait for the answer: the server receives the
    body a block at a time while reading on, but never reads past it, so
    that end is not taken for a client that went away.  The body spans
    several 1 MiB blocks, sent as fast as the socket takes it."""
    import socket
    a = make_agent()
    for i in range(600):
        a.put_var(f"shut/{i:04d}", {"v": f"{i}-" + os.urandom(3000).hex()})
    body = save(a, tmp_path / "shut.snap")
    assert len(body) > 3 << 20
    want = read_all(a)

    b = make_agent(name="b")
    s = socket.create_connection(("127.0.0.1", b.http_port),
                                 timeout=30 * SLOW)
    s.sendall(f"PUT {SNAP} HTTP/1.1\r\nHost: x\r\nContent-Length: "
              f"{len(body)}\r\n\r\n".encode() + body)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert read_all(b) == want
