"""keyraft snapshot benchmark: `operator snapshot save` and `restore` of
BENCH_SNAPSHOT_VARS Variables (default 1,000,000, 256-byte values) on a
single server, their time and peak RSS, against the disk's write speed
measured in the same run.

1. Load: one keyraft server (bench/cluster.py's start-up), the Variables
   bench/rekey/<0000000..> PUT with HTTP/1.1 pipelining as bench/rekey.py
   does.
2. Save: `keyraft operator snapshot save FILE` timed from start to exit
   (download with the archive checked as it arrives, fsync, rename).
   The server's peak RSS while it saves comes from VmHWM after
   resetting it (/proc/PID/clear_refs), the CLI's from wait4; the CPU
   time both spent (/proc/PID/stat, wait4) bounds the wall time from
   below when they share the machine's cores.  Then `save -redact`, which redacts the
   archive as it arrives.
3. Disk: dd of the archive's size from /dev/zero with conv=fdatasync in
   the same directory: save time / dd time is how close the save is to
   disk write speed.
4. Restore: a fresh server, `keyraft operator snapshot restore FILE`
   timed to "Snapshot Restored" (the commit has applied), its peak RSS
   meanwhile; then 1000 sampled Variables read back from it.

Goals (issue 6): save at disk write speed; RSS under 2x the snapshot size.

Environment:
  KEYRAFT_BIN          keyraft binary (default build/keyraft)
  BENCH_SNAPSHOT_VARS  Variables (default 1000000)
  BENCH_DIR            parent of the temp dir (default: the system temp dir)
  BENCH_KEEP           keep the temp dir (servers' logs and data)
  BENCH_LOG_LEVEL      the servers' log_level (default warn)

Reproduce with: /usr/bin/python3 bench/snapshot.py
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402  bench/cluster.py: start-up helpers
import rekey  # noqa: E402  bench/rekey.py: the pipelined loader

NVARS = int(os.environ.get("BENCH_SNAPSHOT_VARS", "1000000"))
MIB = 1024 * 1024


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def settle_rss(pid, timeout=120):
    """Waits until the server's RSS holds still (a raft snapshot that the
    load started has finished), so the save is measured alone.  Returns
    the seconds waited."""
    start, last = time.time(), -1
    while time.time() - start < timeout:
        now = status_kb(pid, "VmRSS")
        if last > 0 and abs(now - last) <= last // 100:
            break
        last = now
        time.sleep(2)
    return time.time() - start


def reset_peak(pid):
    """Resets VmHWM to the current RSS; False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_s(pid):
    """The process's user + system CPU time so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv, env):
    """Runs argv; returns (seconds, peak RSS in KiB, CPU seconds, stdout,
    stderr)."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    start = time.time()
    p = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.time() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    o, e = out.read().decode(), err.read().decode()
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[1:4])} failed: {e.strip()}")
    return secs, ru.ru_maxrss, ru.ru_utime + ru.ru_stime, o, e


def dd(path, nbytes):
    """Seconds to write nbytes of zeros to path and fdatasync them."""
    mib = max(1, (nbytes + MIB - 1) // MIB)
    start = time.time()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M",
                    f"count={mib}", "conv=fdatasync"], check=True,
                   capture_output=True)
    secs = time.time() - start
    os.unlink(path)
    return secs * nbytes / (mib * MIB)


def inspect_size(binary, path):
    r = subprocess.run([binary, "operator", "snapshot", "inspect", path],
                       capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Size\s+=\s+(\d+)", r, re.M).group(1))


def run(work, binary, out):
    procs = cluster.Procs()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYRAFT")}
    try:
        os.mkdir(os.path.join(work, "a"))
        (src,) = cluster.keyraft_start(procs, os.path.join(work, "a"), 1,
                                       binary)
        out["load_s"], out["load_503"] = rekey.load(src, NVARS)
        pid = src["proc"].pid
        out["settle_s"] = settle_rss(pid)
        env["KEYRAFT_ADDR"] = src["base"]
        snap = os.path.join(work, "bench.snap")
        out["rss_before"] = status_kb(pid, "VmRSS")
        out["peak_ok"] = reset_peak(pid)
        cpu0 = cpu_s(pid)
        out["save_s"], out["save_cli_kb"], out["save_cli_cpu"], _, _ = timed(
            [binary, "operator", "snapshot", "save", snap], env)
        out["save_srv_cpu"] = cpu_s(pid) - cpu0
        out["save_peak"] = status_kb(pid, "VmHWM")
        out["archive"] = os.path.getsize(snap)
        out["state_bin"] = inspect_size(binary, snap)
        out["dd_s"] = dd(os.path.join(work, "dd.bin"), out["archive"])
        red = os.path.join(work, "red.snap")
        reset_peak(pid)
        out["red_s"], out["red_cli_kb"], _, _, _ = timed(
            [binary, "operator", "snapshot", "save", "-redact", red], env)
        out["red_peak"] = status_kb(pid, "VmHWM")
        out["red_size"] = os.path.getsize(red)
        os.unlink(red)

        os.mkdir(os.path.join(work, "b"))
        (dst,) = cluster.keyraft_start(procs, os.path.join(work, "b"), 1,
                                       binary)
        dpid = dst["proc"].pid
        env["KEYRAFT_ADDR"] = dst["base"]
        out["dst_before"] = status_kb(dpid, "VmRSS")
        reset_peak(dpid)
        out["restore_s"], out["restore_cli_kb"], _, o, _ = timed(
            [binary, "operator", "snapshot", "restore", snap], env)
        if o.strip() != "Snapshot Restored":
            raise SystemExit(f"bench: restore said {o!r}")
        out["restore_peak"] = status_kb(dpid, "VmHWM")
        out["dst_after"] = status_kb(dpid, "VmRSS")
        for i in random.Random(1).sample(range(NVARS), min(NVARS, 1000)):
            st, body = cluster.http("GET", dst["base"] + "/v1/var/" +
                                    rekey.var_path(i), timeout=10)
            if st != 200 or cluster.keyraft_items(body) != rekey.VALUE:
                raise SystemExit(f"bench: {rekey.var_path(i)} after the "
                                 f"restore: {st} {body[:200]!r}")
        out["checked"] = True
    finally:
        procs.stop()


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = cluster.keyraft_bin()
    work = tempfile.mkdtemp(prefix="keyraft-snapshot-bench-",
                            dir=os.environ.get("BENCH_DIR"))
    r = {}
    failed = None
    try:
        run(work, binary, r)
    except cluster.ClusterFailed as e:
        failed = f"bench: snapshot: the server did not start: {e}"
    except SystemExit as e:
        failed = str(e)
    finally:
        if os.environ.get("BENCH_KEEP"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if "restore_s" not in r:
        print(failed or "bench: snapshot: no figures", file=sys.stderr)
        return 1

    arch = r["archive"]
    mib = arch / MIB
    kb = 1024.0

    def x(kib):
        return f"{kib * kb / arch:.2f}x"

    print(f"\nSnapshot save and restore, {NVARS:,} Variables of 256 B, one "
          f"keyraft server, {os.cpu_count()} cores (CLI on the same "
          "machine)")
    print(f"load:     {NVARS:,} Variables in {r['load_s']:.1f} s "
          f"({NVARS / r['load_s']:.0f}/s), pipelined PUTs; server RSS "
          f"steady {r['settle_s']:.0f} s later")
    print(f"archive:  {mib:.1f} MiB gzip'd (state.bin "
          f"{r['state_bin'] / MIB:.1f} MiB); redacted: "
          f"{r['red_size'] / MIB:.1f} MiB")
    speed = r["dd_s"] / r["save_s"]
    print(f"save:     {r['save_s']:.2f} s = {mib / r['save_s']:.0f} MiB/s; "
          f"dd conv=fdatasync of the same bytes here: {r['dd_s']:.2f} s = "
          f"{mib / r['dd_s']:.0f} MiB/s  ->  {speed:.2f}x disk write speed"
          "   goal: 1.00x")
    cpu = r["save_srv_cpu"] + r["save_cli_cpu"]
    print(f"  CPU time: server {r['save_srv_cpu']:.2f} s + CLI "
          f"{r['save_cli_cpu']:.2f} s = {cpu:.2f} s; over the "
          f"{os.cpu_count()} cores they share, at least {cpu / os.cpu_count():.2f} s "
          "of wall time")
    peak = "" if r["peak_ok"] else " (VmHWM not resettable: since start)"
    print(f"  server RSS {r['rss_before'] / kb:.0f} MiB before, peak "
          f"{r['save_peak'] / kb:.0f} MiB while saving{peak}: +"
          f"{(r['save_peak'] - r['rss_before']) / kb:.0f} MiB = "
          f"{x(r['save_peak'] - r['rss_before'])} the archive "
          f"(total {x(r['save_peak'])}); CLI peak RSS "
          f"{r['save_cli_kb'] / kb:.0f} MiB = {x(r['save_cli_kb'])}"
          "   goal: < 2x")
    print(f"save -redact: {r['red_s']:.2f} s; CLI peak RSS "
          f"{r['red_cli_kb'] / kb:.0f} MiB = {x(r['red_cli_kb'])} (it "
          "redacts the archive as it arrives); server peak +"
          f"{(r['red_peak'] - r['rss_before']) / kb:.0f} MiB")
    print(f"restore:  {r['restore_s']:.2f} s into a fresh server = "
          f"{mib / r['restore_s']:.0f} MiB/s of archive "
          f"({NVARS / r['restore_s']:.0f} Variables/s); server RSS "
          f"{r['dst_before'] / kb:.0f} MiB before, peak "
          f"{r['restore_peak'] / kb:.0f} MiB = {x(r['restore_peak'])} the "
          f"archive, {r['dst_after'] / kb:.0f} MiB after; CLI peak RSS "
          f"{r['restore_cli_kb'] / kb:.0f} MiB   goal: < 2x")
    print("check: 1000 sampled Variables read back from the restored "
          "server")
    print(f"reproduce: KEYRAFT_BIN={binary} BENCH_SNAPSHOT_VARS={NVARS} "
          "/usr/bin/python3 bench/snapshot.py")
    if failed:
        print(f"check failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
