#!/usr/bin/env python3
"""Writes the PV reference workload of the benchmark suite (bench/suite): a tree shaped
like a Kubernetes persistent volume of a database-backed app. At --scale 1:

  db/seg-NNN.dat      16 segment files of 64 MiB (1 GiB) made of 8 KiB pages: a 32-byte header
                      (magic, file, page number, LSN, row count, crc32), rows of structured text,
                      random bytes, free space (zeros); zstd -3 gets about 2x
  app/dNN/sNN/...     40,000 small files of 1-16 KiB (log-uniform) in 400 directories,
                      half text-like, half random
  logs/app-NNN.log    50 text logs (~4 MiB total), plus logs/current.log, a hard link to one
  media/blob-N.bin    4 incompressible blobs, 100 MiB total
  images/disk.img     a sparse image: 256 MiB apparent, 16 data regions of 256 KiB, the rest holes
  links/              symlinks (relative, to a directory, dangling) and hard/ with hard links

--scale multiplies the sizes and counts (0.05 for a quick run). The content is a function of
--seed and --scale alone (mtimes are not). No xattrs or ACLs: rsync -aHS does not copy them.

--files N writes instead "a tree of millions" (issue 21), N files like a mail or many-small-file
PV (files_path() names the i-th one, so mutate_pv.py --files finds them without a walk):

  mail/hNNN/uNNNNN/cur/   97% of N: maildir messages of 100 B-3 KB (log-uniform, mail-like text),
                          500 to a directory, 40 users to an hNNN directory
  wide/                   1% of N in one directory
  deep/cN/l00/l01/...     1% of N along 8 chains 32 directories deep
  big/blob-N.bin          4 incompressible files of 64 MiB
  links/                  N/10,000 symlinks and as many hard links to messages
Files are written with os.open/os.write/os.close (about 50-100k files a second).

usage: make_pv.py DIR [--scale 1] [--seed 1] [--files N]"""
import argparse
import math
import os
import random
import struct
import zlib

PAGE = 8192
HEADER = struct.Struct("<4sIIQII4x")  # magic, file id, page number, LSN, row count, crc32 of the body
BODY = PAGE - HEADER.size
MAGIC = b"FPG1"

WORDS = (b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         b"oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
STATUSES = [b"active", b"pending", b"closed", b"suspended", b"trial"]
LEVELS = [b"INFO ", b"INFO ", b"INFO ", b"DEBUG", b"WARN ", b"ERROR"]


class Pools:
    """Byte pools sliced for content: random bytes (incompressible) and rows of structured text
    (compressible ~4x). Built once, so making a tree costs little beyond writing it."""

    def __init__(self, rng, random_mib=32, rows_mib=4):
        self.rng = rng
        self.random = rng.randbytes(random_mib << 20)
        rows = []
        size = 0
        i = 0
        while size < rows_mib << 20:
            name = rng.choice(WORDS) + b"." + rng.choice(WORDS)
            row = b"%010d|%s|%s@%s.example|%s|%d.%02d|2026-%02d-%02d %02d:%02d:%02d|%s\n" % (
                1000000 + i * 7, name, rng.choice(WORDS), rng.choice(WORDS),
                rng.choice(STATUSES), rng.randrange(100000), rng.randrange(100),
                rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24), rng.randrange(60),
                rng.randrange(60), rng.choice(WORDS))
            rows.append(row)
            size += len(row)
            i += 1
        self.rows = b"".join(rows)

    def random_bytes(self, n):
        off = self.rng.randrange(len(self.random) - n)
        return self.random[off:off + n]

    def row_bytes(self, n):
        off = self.rng.randrange(len(self.rows) - n)
        return self.rows[off:off + n]


def db_page(pools, file_id, page_no, lsn, fresh_random=None):
    """One 8 KiB page: header, rows (compressible), random bytes, free space. fresh_random, when
    given, supplies the random part (the mutation uses never-seen bytes, so no block of the new
    page can be found elsewhere in the old file)."""
    rng = pools.rng
    rows_len = rng.randrange(3200, 4400)
    rand_len = rng.randrange(2600, 3400)
    rand = fresh_random(rand_len) if fresh_random else pools.random_bytes(rand_len)
    body = pools.row_bytes(rows_len) + rand + bytes(BODY - rows_len - rand_len)
    return HEADER.pack(MAGIC, file_id, page_no, lsn, rows_len // 64, zlib.crc32(body)) + body


def log_lines(rng, n_bytes, t0):
    """About n_bytes of log lines (whole lines), timestamps from t0 (seconds) on."""
    out = []
    size = 0
    t = t0
    while size < n_bytes:
        t += rng.randrange(1, 400) / 1000
        line = b"2026-11-27T%02d:%02d:%06.3fZ %s [worker-%d] %s %s %s id=%d took=%dms\n" % (
            int(t // 3600) % 24, int(t // 60) % 60, t % 60, rng.choice(LEVELS), rng.randrange(8),
            rng.choice(WORDS), rng.choice(WORDS), rng.choice(WORDS), rng.randrange(10 ** 6),
            rng.randrange(2000))
        out.append(line)
        size += len(line)
    return b"".join(out), t


def small_size(rng):
    return int(1024 * 16 ** rng.random())  # log-uniform in [1 KiB, 16 KiB)


def small_content(pools, size):
    if pools.rng.random() < 0.5:
        return pools.row_bytes(size)
    return pools.random_bytes(size)


def layout(scale):
    """Sizes and counts at a scale."""
    seg_count = max(2, round(16 * scale))
    seg_pages = max(16, round((1 << 30) * scale / PAGE / seg_count))
    return {
        "seg_count": seg_count,
        "seg_pages": seg_pages,
        "small_files": max(40, round(40000 * scale)),
        "small_dirs": max(4, round(400 * scale)),
        "logs": max(2, round(50 * scale)),
        "log_bytes": max(16 << 10, round((4 << 20) * scale)),
        "media_bytes": max(1 << 20, round((100 << 20) * scale)),
        "image_bytes": max(4 << 20, round((256 << 20) * scale) >> 20 << 20),
        "image_regions": max(2, round(16 * scale)),
        "symlinks": max(4, round(40 * scale)),
        "hardlinks": max(2, round(40 * scale)),
    }


def small_dir(i, dirs):
    """Directory of the i-th small file: app/dNN/sNN, 20 subdirectories per top directory."""
    d = i % dirs
    return os.path.join("app", "d%02d" % (d // 20), "s%02d" % (d % 20))


FILES_PER_DIR = 500
USERS_PER_HOST_DIR = 40
DEEP_CHAINS = 8
DEEP_LEVELS = 32
BIG_FILES = 4
BIG_FILE_BYTES = 64 << 20


def files_layout(n):
    """Counts of the --files tree of n files."""
    wide = max(1, n // 100)
    deep = max(1, n // 100)
    return {"files": n, "wide": wide, "deep": deep, "mail": n - wide - deep,
            "links": max(1, n // 10000)}


def files_path(L, i):
    """The relative path of the i-th file (0 <= i < L["files"]) of a --files tree: a maildir
    name (time.Mpid-counter.host:2,flags), in the mail, wide or deep part."""
    name = "%d.M%dP%d.mx1:2,S" % (1733500000 + i // 3, i, 1000 + i % 31991)
    if i < L["wide"]:
        return os.path.join("wide", name)
    i -= L["wide"]
    if i < L["deep"]:
        chain, k = i % DEEP_CHAINS, i // DEEP_CHAINS
        level = k * DEEP_LEVELS // max(1, L["deep"] // DEEP_CHAINS + 1)
        return os.path.join("deep", "c%d" % chain, *["l%02d" % x for x in range(level + 1)], name)
    i -= L["deep"]
    d = i // FILES_PER_DIR
    return os.path.join("mail", "h%03d" % (d // USERS_PER_HOST_DIR), "u%05d" % d, "cur", name)


def mail_size(rng):
    return int(100 * 30 ** rng.random())  # log-uniform in [100 B, 3 KB)


def write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def make_files_tree(root, n, rng, pools):
    """The --files tree (see the top of this file)."""
    L = files_layout(n)
    made = set()
    rows, rows_len = pools.rows, len(pools.rows) - 4096
    rand = rng.random
    for i in range(n):
        rel = files_path(L, i)
        d = os.path.dirname(rel)
        if d not in made:
            os.makedirs(os.path.join(root, d), exist_ok=True)
            made.add(d)
        size = int(100 * 30 ** rand())
        off = int(rand() * rows_len)
        write_file(os.path.join(root, rel), rows[off:off + size])
    os.makedirs(os.path.join(root, "big"), exist_ok=True)
    for i in range(BIG_FILES):
        with open(os.path.join(root, "big", "blob-%d.bin" % i), "wb") as out:
            for _ in range(0, BIG_FILE_BYTES, 8 << 20):
                out.write(rng.randbytes(8 << 20))
    os.makedirs(os.path.join(root, "links", "hard"), exist_ok=True)
    picks = rng.sample(range(n), 2 * L["links"])
    for k, i in enumerate(picks[:L["links"]]):
        os.symlink(os.path.join("..", files_path(L, i)), os.path.join(root, "links", "sym%05d" % k))
    for k, i in enumerate(picks[L["links"]:]):
        os.link(os.path.join(root, files_path(L, i)), os.path.join(root, "links", "hard", "h%05d" % k))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--files", type=int, help="a tree of FILES small files instead (see above)")
    a = p.parse_args()
    if a.files:
        rng = random.Random(a.seed)
        os.makedirs(a.dir, exist_ok=True)
        make_files_tree(a.dir, a.files, rng, Pools(rng, random_mib=1))
        return
    rng = random.Random(a.seed)
    pools = Pools(rng)
    L = layout(a.scale)
    root = a.dir
    os.makedirs(root, exist_ok=True)

    # DB segments, written 1 MiB at a time.
    os.makedirs(os.path.join(root, "db"), exist_ok=True)
    batch = (1 << 20) // PAGE
    for f in range(L["seg_count"]):
        with open(os.path.join(root, "db", "seg-%03d.dat" % f), "wb") as out:
            for first in range(0, L["seg_pages"], batch):
                out.write(b"".join(db_page(pools, f, n, 1000 + n)
                                   for n in range(first, min(first + batch, L["seg_pages"]))))

    # Small files.
    for d in range(L["small_dirs"]):
        os.makedirs(os.path.join(root, small_dir(d, L["small_dirs"])), exist_ok=True)
    small_paths = []
    for i in range(L["small_files"]):
        rel = os.path.join(small_dir(i, L["small_dirs"]),
                           "f%06d.%s" % (i, "json" if i % 3 == 0 else "dat"))
        with open(os.path.join(root, rel), "wb") as out:
            out.write(small_content(pools, small_size(rng)))
        small_paths.append(rel)

    # Logs: sizes vary around the mean; one has a second name (current.log).
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    t = 0.0
    for i in range(L["logs"]):
        data, t = log_lines(rng, rng.randrange(L["log_bytes"] // L["logs"] // 2,
                                               L["log_bytes"] // L["logs"] * 3 // 2), t)
        with open(os.path.join(root, "logs", "app-%03d.log" % i), "wb") as out:
            out.write(data)
    os.link(os.path.join(root, "logs", "app-%03d.log" % (L["logs"] - 1)),
            os.path.join(root, "logs", "current.log"))

    # Media: incompressible, never seen elsewhere in the tree (fresh random bytes).
    os.makedirs(os.path.join(root, "media"), exist_ok=True)
    weights = [4, 3, 2, 1][:max(1, min(4, round(4 * a.scale)))]
    for i, w in enumerate(weights):
        size = L["media_bytes"] * w // sum(weights)
        with open(os.path.join(root, "media", "blob-%d.bin" % i), "wb") as out:
            for off in range(0, size, 8 << 20):
                out.write(rng.randbytes(min(8 << 20, size - off)))

    # Sparse image: data regions at distinct MiB offsets (one at 0, like a superblock), holes
    # elsewhere, the last MiB a hole too.
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    mibs = L["image_bytes"] >> 20
    offsets = [0] + sorted(rng.sample(range(1, mibs - 1), min(mibs - 2, L["image_regions"] - 1)))
    with open(os.path.join(root, "images", "disk.img"), "wb") as out:
        for m in offsets:
            out.seek(m << 20)
            out.write(pools.row_bytes(128 << 10) + pools.random_bytes(128 << 10))
        out.truncate(L["image_bytes"])

    # Links: symlinks to small files (relative), to a directory, dangling, absolute; hard links.
    os.makedirs(os.path.join(root, "links", "hard"), exist_ok=True)
    picks = rng.sample(small_paths, L["symlinks"] + L["hardlinks"])
    for i, rel in enumerate(picks[:L["symlinks"]]):
        os.symlink(os.path.join("..", rel), os.path.join(root, "links", "sym%03d" % i))
    os.symlink("../app/d00", os.path.join(root, "links", "to-dir"))
    os.symlink("../nowhere/at/all", os.path.join(root, "links", "dangling"))
    os.symlink("/etc/hostname", os.path.join(root, "links", "absolute"))
    for i, rel in enumerate(picks[L["symlinks"]:]):
        os.link(os.path.join(root, rel), os.path.join(root, "links", "hard", "h%03d.dat" % i))


if __name__ == "__main__":
    main()
