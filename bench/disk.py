#!/usr/bin/python3
"""What a raft snapshot's disk work costs the raft log's writes beside it.

A thread appends 4 KiB with O_DIRECT | O_DSYNC (as libraft writes its
log) every millisecond or so, and the latency of each append is kept.
Beside it, on the same file system:

1. slices: a 411 MB snapshot written as keyraft writes one
   (src/cluster/snapwrite.c): 512 KiB O_DIRECT slices, each on the disk
   before the next, paced at BENCH_DISK_RATES MB/s; and, for comparison,
   nothing at all.
2. removal: an old 411 MB snapshot removed with one unlink; the way
   keyraft's unlink() did it before: the name first, then the blocks
   freed from the end 8 MiB at a time, each step fdatasync'ed and
   followed by a rest three times as long; and the way it does now: the
   same in 1 MiB steps, paced at 64 MiB/s (a rest of three times the
   step where that is longer).  On a file system mounted with discard,
   each step's blocks are discarded at its commit.

It prints the appends' p50/p99/max for each, and the longest append and
the p99 during a removal, each way.

  /usr/bin/python3 bench/disk.py      # in $BENCH_DIR, default /tmp
  BENCH_DISK_MB=411 BENCH_DISK_RATES=25,50,100 BENCH_DISK_ROUNDS=2 ...

Put BENCH_DIR on the file system of the servers' data_dir.
"""
import mmap
import os
import tempfile
import threading
import time

SLICE = 512 << 10
STEP_BEFORE = 8 << 20
STEP = 1 << 20
STEP_RATE = 64 << 20    # bytes per second, over the steps
REST = 3
REST_MAX = 0.1
LOG_SPAN = 64 << 20


def appender(path, stop, lat):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT | os.O_DSYNC,
                 0o600)
    try:
        os.posix_fallocate(fd, 0, LOG_SPAN)
        buf = mmap.mmap(-1, 4096)
        buf.write(b"x" * 4096)
        off = 0
        while not stop.is_set():
            t = time.monotonic()
            os.pwrite(fd, buf, off)
            lat.append((t, time.monotonic() - t))
            off = (off + 4096) % LOG_SPAN
            time.sleep(0.001)
    finally:
        os.close(fd)
        os.unlink(path)


def with_appender(work, fn):
    """Runs fn() beside the appender; returns (what fn returned, the
    appends' latencies from its start to its end)."""
    stop, lat = threading.Event(), []
    th = threading.Thread(target=appender,
                          args=(os.path.join(work, "log"), stop, lat))
    th.start()
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        out = fn()
        t1 = time.monotonic()
        time.sleep(0.2)
    finally:
        stop.set()
        th.join()
    return out, sorted(l for t, l in lat if t0 <= t <= t1 + 0.2)


def paced_slices(path, size, rate):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    try:
        buf = mmap.mmap(-1, SLICE)
        buf.write(os.urandom(SLICE))
        t0, done = time.monotonic(), 0
        while done < size:
            os.pwrite(fd, buf, done)
            done += SLICE
            rest = t0 + done / (rate * 1e6) - time.monotonic()
            if rest > 0:
                time.sleep(rest)
    finally:
        os.close(fd)


def make_file(path, size):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)


def stepped_unlink(path, step=STEP, rate=STEP_RATE):
    """The name, then the blocks from the end, step bytes at a time, at
    rate bytes a second (0: only the rests)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.unlink(path)
        size = os.fstat(fd).st_size
        while size > step:
            t = time.monotonic()
            size -= step
            os.ftruncate(fd, size)
            os.fdatasync(fd)
            rest = min((time.monotonic() - t) * REST, REST_MAX)
            if rate:
                rest = max(rest, step / rate)
            time.sleep(max(t + rest - time.monotonic(), 0))
    finally:
        os.close(fd)


def steps_before(path):
    stepped_unlink(path, STEP_BEFORE, 0)


def timed(fn, *args):
    t = time.monotonic()
    fn(*args)
    return time.monotonic() - t


def quantile(lat, q):
    """lat sorted."""
    return lat[min(int(len(lat) * q), len(lat) - 1)]


def p99(lat):
    return quantile(lat, .99)


def figures(lat):
    return (f"p50 {quantile(lat, .5) * 1000:5.2f}  "
            f"p99 {p99(lat) * 1000:5.2f}  max {lat[-1] * 1000:6.1f} ms")


def main():
    size = int(os.environ.get("BENCH_DISK_MB", "411")) << 20
    rates = [int(r) for r in
             os.environ.get("BENCH_DISK_RATES", "25,50,100").split(",")]
    rounds = int(os.environ.get("BENCH_DISK_ROUNDS", "2"))
    work = tempfile.mkdtemp(prefix="keyraft-disk-bench-",
                            dir=os.environ.get("BENCH_DIR", "/tmp"))
    snap = os.path.join(work, "snapshot-1-2-3")
    try:
        print(f"4 KiB O_DIRECT|O_DSYNC appends, one a millisecond, beside a "
              f"{size >> 20} MiB snapshot's disk work, in {work}")
        removals = {"unlink": os.unlink, "8 MiB steps": steps_before,
                    "paced steps": stepped_unlink}
        worst = {how: 0.0 for how in removals}
        worst99 = {how: 0.0 for how in removals}
        quiet, sliced = [], {rate: [] for rate in rates}
        for _ in range(rounds):
            _, lat = with_appender(work, lambda: time.sleep(6))
            quiet.append(p99(lat))
            print(f"  nothing beside      {figures(lat)}")
            for rate in rates:
                _, lat = with_appender(
                    work, lambda: paced_slices(snap, min(size, rate << 23),
                                               rate))
                sliced[rate].append(p99(lat))
                print(f"  slices at {rate:3} MB/s  {figures(lat)}")
                steps_before(snap)      # outside the window
            for how, fn in removals.items():
                make_file(snap, size)
                took, lat = with_appender(work, lambda: timed(fn, snap))
                worst[how] = max(worst[how], lat[-1])
                worst99[how] = max(worst99[how], p99(lat))
                print(f"  removal, {how:11}  {figures(lat)}  "
                      f"(took {took * 1000:.0f} ms)")
        base = max(quiet)
        print("p99 of the appends beside slices / beside nothing (the "
              "worst of each): " + ", ".join(
                  f"{rate} MB/s {max(v) / base:.2f}x"
                  for rate, v in sliced.items()))
        print("during a removal, the longest append / the worst p99: " +
              ", ".join(f"{how} {worst[how] * 1000:.1f} / "
                        f"{worst99[how] * 1000:.2f} ms" for how in removals))
        print("reproduce: /usr/bin/python3 bench/disk.py")
    finally:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)


if __name__ == "__main__":
    main()
