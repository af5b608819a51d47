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

--files N --fraction F: on a --files tree of make_pv.py instead, changes F of its N files (0.001:
1,000 of a million), found by make_pv.files_path without a walk: 45% appended to (50-500 B of
mail-like text), 45% rewritten (new content and size), and 4% created, 3% deleted, 3% renamed
(a maildir flag change, ":2,S" -> ":2,RS", as a mail client marks a message answered) among the
messages; one large file gets 1 MiB appended. Files an earlier mutation deleted or renamed are
passed over (the next one picked), so two seeds can run one after the other.

usage: mutate_pv.py DIR [--seed 1] [--files N --fraction F]"""
import argparse
import json
import os
import random
import sys

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pv import (PAGE, HEADER, Pools, db_page, files_layout, files_path, log_lines,  # noqa: E402
                     mail_size, small_content, small_size, write_file)


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


def mutate_files(root, n, fraction, seed):
    """The --files mutation (see the top of this file); returns its summary."""
    rng = random.Random(0x5EED0000 + seed)
    pools = Pools(rng, random_mib=1)
    L = files_layout(n)
    count = max(10, round(n * fraction))
    kinds = (["append"] * 45 + ["rewrite"] * 45 + ["create"] * 4 + ["delete"] * 3
             + ["rename"] * 3)
    done = {k: 0 for k in set(kinds)}
    bytes_written = 0
    for i in rng.sample(range(n), 2 * count):
        if sum(done.values()) == count:
            break
        kind = kinds[sum(done.values()) * len(kinds) // count]
        path = os.path.join(root, files_path(L, i))
        if not os.path.exists(path):
            continue  # deleted or renamed by an earlier mutation
        data = pools.row_bytes(mail_size(rng) if kind != "append" else rng.randrange(50, 500))
        if kind == "append":
            with open(path, "ab") as out:
                out.write(data)
        elif kind == "rewrite":
            write_file(path, data)
        elif kind == "create":
            write_file(os.path.join(os.path.dirname(path), "new-s%d-%d.mx1:2," % (seed, i)), data)
        elif kind == "delete":
            os.unlink(path)
            data = b""
        else:
            os.rename(path, path[:-1] + "RS")
            data = b""
        done[kind] += 1
        bytes_written += len(data)
    with open(os.path.join(root, "big", "blob-0.bin"), "ab") as out:
        out.write(rng.randbytes(1 << 20))
    return {"seed": seed, "files": n, "fraction": fraction, "files_changed": sum(done.values()),
            "by_kind": done, "small_bytes_written": bytes_written, "big_bytes_appended": 1 << 20}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--files", type=int, help="the tree is make_pv.py --files FILES")
    p.add_argument("--fraction", type=float, default=0.001)
    a = p.parse_args()
    root = a.dir
    if a.files:
        json.dump(mutate_files(root, a.files, a.fraction, a.seed), sys.stdout)
        print()
        return
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
