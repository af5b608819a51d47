#!/usr/bin/env python3
"""One "stage interval" of app writes on a tree made by make_pv.py (bench/suite):

  - rewrites 1% of the DB pages (db/*.dat) in place at random page-aligned offsets: new header
    (higher LSN), new rows, never-seen random bytes; file sizes do not change
  - appends 2-32 KiB of log lines to half of the logs (logs/app-*.log)
  - adds ~200 small files and deletes ~50 (scaled by the number of small files found, against
    40,000 at scale 1)
  - renames one small-file directory (app/dNN/sNN -> app/dNN/sNN-moved-SEED)

Counts come from the tree, so the same script fits every --scale of make_pv.py. The changes are a
function of the tree and --seed. Prints a JSON summary of what it did on stdout.

usage: mutate_pv.py DIR [--seed 1]"""
import argparse
import json
import os
import random
import sys

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pv import PAGE, HEADER, Pools, db_page, log_lines, small_content, small_size  # noqa: E402


def sorted_files(top):
    """Regular files under top, relative to top, in a stable order."""
    out = []
    for d, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(d, f)
            if os.path.isfile(path) and not os.path.islink(path):
                out.append(os.path.relpath(path, top))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    root = a.dir
    # A stream of its own: the rewritten pages must not repeat content of the original tree.
    rng = random.Random(0x5EED0000 + a.seed)
    pools = Pools(rng, random_mib=1)
    summary = {"seed": a.seed}

    # 1% of the DB pages, rewritten in place.
    db = os.path.join(root, "db")
    segs = sorted(f for f in os.listdir(db) if f.endswith(".dat"))
    pages = [os.path.getsize(os.path.join(db, f)) // PAGE for f in segs]
    total = sum(pages)
    chosen = sorted(rng.sample(range(total), max(1, round(total / 100))))
    by_file = {}
    for g in chosen:
        f = 0
        while g >= pages[f]:
            g -= pages[f]
            f += 1
        by_file.setdefault(f, []).append(g)
    for f, page_nos in sorted(by_file.items()):
        with open(os.path.join(db, segs[f]), "r+b") as out:
            for n in page_nos:
                out.seek(n * PAGE)
                lsn = HEADER.unpack(out.read(HEADER.size))[3]
                out.seek(n * PAGE)
                out.write(db_page(pools, f, n, lsn + 1000000 + a.seed, fresh_random=rng.randbytes))
    summary.update(db_pages=total, db_pages_rewritten=len(chosen),
                   db_files_touched=len(by_file), db_bytes_rewritten=len(chosen) * PAGE)

    # Appends to half of the logs.
    logs_dir = os.path.join(root, "logs")
    logs = sorted(f for f in os.listdir(logs_dir) if f.startswith("app-") and f.endswith(".log"))
    appended = 0
    t = 86400.0 + a.seed * 3600
    for name in sorted(rng.sample(logs, len(logs) // 2)):
        data, t = log_lines(rng, rng.randrange(2 << 10, 32 << 10), t)
        with open(os.path.join(logs_dir, name), "ab") as out:
            out.write(data)
        appended += len(data)
    summary.update(logs=len(logs), logs_appended=len(logs) // 2, log_bytes_appended=appended)

    # Small files: ~200 added, ~50 deleted (per 40,000).
    app = os.path.join(root, "app")
    small = sorted_files(app)
    dirs = sorted({os.path.dirname(f) for f in small})
    n_add = max(1, round(200 * len(small) / 40000))
    n_del = max(1, round(50 * len(small) / 40000))
    added_bytes = 0
    for i in range(n_add):
        rel = os.path.join(rng.choice(dirs), "new-s%d-%05d.dat" % (a.seed, i))
        data = small_content(pools, small_size(rng))
        with open(os.path.join(app, rel), "wb") as out:
            out.write(data)
        added_bytes += len(data)
    for rel in rng.sample(small, n_del):
        os.unlink(os.path.join(app, rel))
    summary.update(small_files=len(small), files_added=n_add, bytes_added=added_bytes,
                   files_deleted=n_del)

    # One directory renamed.
    leaves = sorted({os.path.dirname(f) for f in sorted_files(app)} - {""})
    old = rng.choice(leaves)
    new = "%s-moved-%d" % (old, a.seed)
    moved = sum(len(fs) for _, _, fs in os.walk(os.path.join(app, old)))
    os.rename(os.path.join(app, old), os.path.join(app, new))
    summary.update(dir_renamed="app/%s -> app/%s" % (old, new), files_in_renamed_dir=moved)

    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
