"""Writes a seed for fuzz_archive (its "pack" mode, first byte even):
meta.json and a state.bin with one aead root key, its identity record
and one Variable, built from the encoding in docs/architecture.md
("Snapshots"), so the fuzzer starts inside the checks instead of at gzip.
With a second argument, also writes that state.bin there as a seed for
fuzz_snapshot, and next to it ("-legacy") the same state with a ROOT_KEY
record from before rekey_total.  Usage: make_archive_seed.py OUT_FILE
[STATE_SEED]"""
import json
import struct
import sys


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<I", len(b)) + b


def rec(t, body):
    return struct.pack("<BI", t, len(body)) + body


KEY = "00000000-0000-4000-8000-000000000001"
blob = s(b"\xd1" * 60) + s(b"") + struct.pack("<Q", 0) + s(KEY) + s(b"")
wrapped = s("aead") + s("aead") + blob + blob + s(b"\xc1" * 32)
legacy_key = (s(KEY) + s("aes256-gcm") +
              struct.pack("<qQQBq", 1, 1, 1, 0, 0) + struct.pack("<I", 1) +
              wrapped)
key = legacy_key + struct.pack("<Q", 0)
identity = s(KEY) + struct.pack("<qB", 7200, 0)
var = (s("default") + s("app/db") + s(KEY) + s(b"\x5e" * 40) +
       struct.pack("<QQqq", 2, 2, 3, 3))


def state_bin(key):
    return (b"KRST\x01" + rec(1, struct.pack("<QQ", 1, 2)) + rec(2, key) +
            rec(5, identity) + rec(3, var) + rec(255, struct.pack("<Q", 4)))


state = state_bin(key)
meta = json.dumps({"Version": 1, "ID": "1-2-3", "Index": 2, "Term": 1,
                   "Configuration": {"Servers": [
                       {"Suffrage": "Voter", "ID": "1",
                        "Address": "127.0.0.1:4657"}]},
                   "Size": len(state)}, separators=(",", ":")).encode()
with open(sys.argv[1], "wb") as f:
    f.write(b"\x00" + struct.pack("<H", len(meta)) + meta + state)
if len(sys.argv) > 2:
    with open(sys.argv[2], "wb") as f:
        f.write(state)
    with open(sys.argv[2] + "-legacy", "wb") as f:
        f.write(state_bin(legacy_key))
