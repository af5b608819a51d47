#!/usr/bin/env python3
"""Writes the reference tree for ferry's benchmarks: ~1 GiB in ~40,000 files shaped like a PV
(many small files in nested directories, a few large ones, half compressible text, half random
bytes, one sparse image). Deterministic for a given --seed.

usage: make_tree.py DIR [--files 40000] [--total-mib 1024] [--seed 1]"""
import argparse
import os
import random


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--files", type=int, default=40000)
    p.add_argument("--total-mib", type=int, default=1024)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    total = a.total_mib << 20
    large_count = 4
    large_size = total // 4 // large_count          # a quarter of the bytes in 4 large files
    small_budget = total - large_count * large_size
    small_count = a.files - large_count - 1
    mean = small_budget // small_count
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(rng.randint(3, 9)))
             for _ in range(2000)]
    text_block = b" ".join(rng.choice(words) for _ in range(40000))[: 1 << 18]
    random_block = rng.randbytes(1 << 20)

    def content(size, i):
        block = text_block if i % 2 == 0 else random_block
        start = rng.randrange(0, len(block) // 2)
        out = bytearray()
        while len(out) < size:
            out += block[start:start + size - len(out)]
            start = 0
        return bytes(out)

    os.makedirs(a.dir, exist_ok=True)
    for i in range(small_count):
        d = os.path.join(a.dir, "data", "d%02d" % (i % 40), "s%03d" % (i // 40 % 25))
        if i < 1000:
            os.makedirs(d, exist_ok=True)
        size = min(int(rng.expovariate(1.0 / mean)), 16 * mean)
        with open(os.path.join(d, "f%06d.dat" % i), "wb") as f:
            f.write(content(size, i))
    os.makedirs(os.path.join(a.dir, "segments"), exist_ok=True)
    for i in range(large_count):
        with open(os.path.join(a.dir, "segments", "seg%d" % i), "wb") as f:
            for _ in range(large_size // len(random_block)):
                f.write(content(len(random_block), i))
    with open(os.path.join(a.dir, "sparse.img"), "wb") as f:
        f.truncate(256 << 20)
        f.seek(128 << 20)
        f.write(b"x" * 4096)


if __name__ == "__main__":
    main()
