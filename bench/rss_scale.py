"""Memory scaling of ferry with the number of files (bench/suite --rss-scale).

For 100,000 and then 400,000 small files (100-700 bytes of random bytes each, 1,000 to a
directory), on a tmpfs so that the disk is out of the picture: a full `ferry sync` into a fresh
`ferry daemon` whose volume and state dir are on the tmpfs too. Measured, as in the stages
(bench/rss.py): the sender's peak RSS by os.wait4 (ru_maxrss, or its sampled VmHWM when under
the spawning Python's), the receiver's as the daemon's
VmHWM after a clear_refs reset. The copy is checked by `rsync -anicHAX --delete`.

The figure of merit is the growth per file between the two trees:
    (peak at 400k - peak at 100k) / 300,000 bytes per file, for sender and receiver,
which takes out the fixed cost (buffers, SQLite, the binary) and leaves what ferry keeps per
entry. Target: <= 200 bytes per file.

The tmpfs: inside a private mount namespace (bench/suite runs itself under `unshare -m` as root)
a tmpfs is mounted for each tree and unmounted after it; otherwise the trees go to /dev/shm and
are removed file by file."""
import json
import os
import random
import shutil
import subprocess
import time

import daemons
import rss

COUNTS = (100000, 400000)
FILES_PER_DIR = 1000
GROWTH_TARGET_BYTES_PER_FILE = 200


def make_small_tree(root, count, seed=1):
    rng = random.Random(seed)
    pool = rng.randbytes(1 << 20)
    for i in range(count):
        d = os.path.join(root, "d%04d" % (i // FILES_PER_DIR))
        if i % FILES_PER_DIR == 0:
            os.makedirs(d)
        size = rng.randrange(100, 700)
        off = rng.randrange(len(pool) - size)
        with open(os.path.join(d, "f%06d" % i), "wb") as f:
            f.write(pool[off:off + size])


class Scratch:
    """A fresh, empty tmpfs directory per tree: a mount of its own where we may mount."""

    def __init__(self, base, may_mount, log):
        self.base = base
        self.may_mount = may_mount
        self.log = log

    def open(self, name):
        path = os.path.join(self.base, name)
        os.makedirs(path, exist_ok=True)
        if self.may_mount:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12g,mode=0755", "tmpfs", path],
                           check=True)
        return path

    def close(self, path):
        if self.may_mount:
            subprocess.run(["umount", path], check=True)
        else:
            shutil.rmtree(path)


def one_run(ferry, top, count, log):
    src, target, state = (os.path.join(top, x) for x in ("src", "target", "state"))
    for d in (src, target, state):
        os.makedirs(d)
    t0 = time.monotonic()
    make_small_tree(src, count)
    log("  %d files made in %.1f s" % (count, time.monotonic() - t0))
    proc, port = daemons.start_ferry(ferry, target, state, os.path.join(top, "daemon.log"))
    try:
        peak = rss.DaemonPeak(proc.pid)
        rss_before = peak.reset()
        out_path = os.path.join(top, "sync.out")
        t0 = time.monotonic()
        with open(out_path, "wb") as out, open(os.path.join(top, "sync.err"), "wb") as err:
            rc, sender = rss.run_measured(
                [ferry, "sync", "--no-progress", "--json", "--insecure", src,
                 "ferry://127.0.0.1:%d/bench" % port], stdout=out, stderr=err)
        seconds = time.monotonic() - t0
        receiver_peak = peak.peak()
    finally:
        daemons.stop([proc])
    if rc != 0:
        raise RuntimeError("ferry sync of %d files failed (exit %d): %s" % (
            count, rc, open(os.path.join(top, "sync.err")).read()[-2000:]))
    diff = subprocess.run(["rsync", "-anicHAX", "--delete", "--numeric-ids", src + "/",
                           target + "/"], check=True, capture_output=True, text=True).stdout
    if diff.strip():
        raise RuntimeError("the copy of %d files differs:\n%s" % (count, diff[:2000]))
    report = json.load(open(out_path))
    return {"files": count, "seconds": round(seconds, 3), "sender_peak_bytes": sender["peak_bytes"],
            "sender": sender,
            "receiver_peak_bytes": receiver_peak, "receiver_rss_before_bytes": rss_before,
            "ferry_json": report}


def run(ferry, base, may_mount, log, counts=COUNTS):
    """One run per count (two, ascending); returns the JSON section (runs, growth per file,
    verdicts)."""
    scratch = Scratch(base, may_mount, log)
    runs = []
    for count in counts:
        log("rss-scale: %d files on %s" % (count, "a private tmpfs" if may_mount else base))
        top = scratch.open("files-%d" % count)
        try:
            runs.append(one_run(ferry, top, count, log))
        finally:
            scratch.close(top)
        log("  %.2f s, sender %.1f MiB, receiver %.1f MiB" % (
            runs[-1]["seconds"], runs[-1]["sender_peak_bytes"] / (1 << 20),
            runs[-1]["receiver_peak_bytes"] / (1 << 20)))
    small, large = runs[0], runs[-1]
    files = large["files"] - small["files"]
    growth = {side: round((large[side + "_peak_bytes"] - small[side + "_peak_bytes"]) / files, 1)
              for side in ("sender", "receiver")}
    return {"runs": runs, "growth_bytes_per_file": growth,
            "target_bytes_per_file": GROWTH_TARGET_BYTES_PER_FILE,
            "verdicts": {side: "PASS" if g <= GROWTH_TARGET_BYTES_PER_FILE else "MISS"
                         for side, g in growth.items()},
            "tmpfs": "private mount" if may_mount else base}


def print_table(section, mib):
    print("\nRSS scaling: ferry full sync of small files (100-700 B, 1,000 per directory) into a "
          "ferry daemon, tmpfs both sides")
    print("%10s  %9s  %12s  %14s" % ("files", "seconds", "sender peak", "receiver peak"))
    for r in section["runs"]:
        print("%10s  %9.2f  %12s  %14s" % ("{:,}".format(r["files"]), r["seconds"],
                                           mib(r["sender_peak_bytes"]),
                                           mib(r["receiver_peak_bytes"])))
    g, v = section["growth_bytes_per_file"], section["verdicts"]
    small, large = section["runs"][0]["files"], section["runs"][-1]["files"]
    print("growth per file (peak at {:,} - peak at {:,}) / {:,}: sender {:.0f} B, receiver {:.0f} B;"
          " target <= {} B: sender {}, receiver {}".format(
              large, small, large - small, g["sender"], g["receiver"],
              section["target_bytes_per_file"], v["sender"], v["receiver"]))
