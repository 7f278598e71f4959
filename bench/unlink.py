#!/usr/bin/python3
"""What removing an old raft snapshot costs the raft log's writes beside it.

libraft keeps two raft snapshots and removes older ones; at a million
Variables each is about 411 MB.  This writes a file of that size, then,
while a thread appends 4 KiB with O_DIRECT | O_DSYNC (as libraft writes
its log) every 0.5 ms, removes it in one unlink, or the way keyraft's
unlink() does for a snapshot's data file (src/cluster/snapwrite.c):
shrunk from the end 8 MiB at a time, each step fdatasync'ed and followed
by a rest three times as long.  It prints the longest write before and
during each removal, and how long the removal took.

  /usr/bin/python3 bench/unlink.py          # in $BENCH_DIR, default /tmp
  BENCH_UNLINK_MB=411 BENCH_UNLINK_ROUNDS=2 ...

Put BENCH_DIR on the file system of the servers' data_dir.
"""
import mmap
import os
import tempfile
import threading
import time

STEP = 8 << 20
REST = 3
REST_MAX = 0.1


def writer(path, stop, lat):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT | os.O_DSYNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, 256 << 20)
        buf = mmap.mmap(-1, 4096)
        buf.write(b"x" * 4096)
        off = 0
        while not stop.is_set():
            t = time.monotonic()
            os.pwrite(fd, buf, off)
            lat.append((t, time.monotonic() - t))
            off = (off + 4096) % (256 << 20)
            time.sleep(0.0005)
    finally:
        os.close(fd)
        os.unlink(path)


def make_file(path, size):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)


def shrink_then_unlink(path):
    fd = os.open(path, os.O_WRONLY)
    try:
        size = os.fstat(fd).st_size
        while size > STEP:
            t = time.monotonic()
            size -= STEP
            os.ftruncate(fd, size)
            os.fdatasync(fd)
            time.sleep(min((time.monotonic() - t) * REST, REST_MAX))
    finally:
        os.close(fd)
    os.unlink(path)


def round_(work, how, size):
    big = os.path.join(work, "snapshot-1-2-3")
    make_file(big, size)
    stop, lat = threading.Event(), []
    th = threading.Thread(target=writer, args=(os.path.join(work, "log"), stop, lat))
    th.start()
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        if how == "unlink":
            os.unlink(big)
        else:
            shrink_then_unlink(big)
        t1 = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        th.join()
    before = max(l for t, l in lat if t < t0 - 0.05)
    during = max(l for t, l in lat if t0 - 0.05 <= t <= t1 + 0.2)
    return t1 - t0, before, during


def main():
    size = int(os.environ.get("BENCH_UNLINK_MB", "411")) << 20
    rounds = int(os.environ.get("BENCH_UNLINK_ROUNDS", "2"))
    work = tempfile.mkdtemp(prefix="keyraft-unlink-bench-",
                            dir=os.environ.get("BENCH_DIR", "/tmp"))
    try:
        print(f"Removing a {size >> 20} MiB file beside 4 KiB O_DIRECT|O_DSYNC "
              f"writes, in {work}")
        worst = {"unlink": 0.0, "shrink": 0.0}
        for _ in range(rounds):
            for how in ("unlink", "shrink"):
                took, before, during = round_(work, how, size)
                worst[how] = max(worst[how], during)
                print(f"  {how:6}: took {took * 1000:5.0f} ms; longest write "
                      f"before {before * 1000:5.1f} ms, during "
                      f"{during * 1000:5.1f} ms")
        print(f"longest write during a removal: one unlink "
              f"{worst['unlink'] * 1000:.1f} ms, shrunk in 8 MiB steps "
              f"{worst['shrink'] * 1000:.1f} ms -> "
              f"{worst['unlink'] / max(worst['shrink'], 1e-6):.1f}x")
        print("reproduce: /usr/bin/python3 bench/unlink.py")
    finally:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)


if __name__ == "__main__":
    main()
