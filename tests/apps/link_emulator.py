#!/usr/bin/env python3
"""A network link emulated in userspace, for the network tests on kernels without tc netem (this
CI machine's kernel has neither sch_netem nor sch_fq). It is a STAND-IN for netem, named as such:
real IP packets of real TCP connections cross it, and it applies what netem would — delay with
jitter (without reordering), random loss and a rate limit — in this process instead of the
kernel.

  link_emulator.py NS_A DEV_A NS_B DEV_B DELAY_MS JITTER_MS LOSS_PERCENT RATE_MBIT READY_FILE

Creates the TUN device DEV_A in network namespace NS_A and DEV_B in NS_B (ip netns names), then
relays every packet between them until SIGTERM. READY_FILE is created once both devices exist;
the caller then gives them addresses and brings them up (point to point). SIGUSR1 cuts the link
(every packet lost) and the next SIGUSR1 restores it.
"""
import ctypes
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def enter(namespace):
    fd = os.open("/var/run/netns/" + namespace, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        sys.exit("setns %s: %s" % (namespace, os.strerror(ctypes.get_errno())))
    os.close(fd)


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def main():
    ns_a, dev_a, ns_b, dev_b = sys.argv[1:5]
    delay, jitter = float(sys.argv[5]) / 1000, float(sys.argv[6]) / 1000
    loss, rate = float(sys.argv[7]) / 100, float(sys.argv[8]) * 1e6 / 8  # bytes per second
    ready = sys.argv[9]
    enter(ns_a)
    fa = tun(dev_a)
    enter(ns_b)
    fb = tun(dev_b)
    open(ready, "w").close()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cut = [False]

    def toggle(*_):
        cut[0] = not cut[0]

    signal.signal(signal.SIGUSR1, toggle)
    peer = {fa: fb, fb: fa}
    link_free = {fa: 0.0, fb: 0.0}  # when each direction's link is free again (the rate)
    last_due = {fa: 0.0, fb: 0.0}   # the latest delivery so far: no reordering
    queue, seq = [], 0
    while True:
        now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else 1.0
        try:
            readable, _, _ = select.select([fa, fb], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in readable:
            for _ in range(64):
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if cut[0] or random.random() < loss:
                    continue
                sent = max(now, link_free[fd]) + len(packet) / rate
                link_free[fd] = sent
                due = max(sent + delay + random.uniform(-jitter, jitter), last_due[fd])
                last_due[fd] = due
                seq += 1
                heapq.heappush(queue, (due, seq, peer[fd], packet))
        while queue and queue[0][0] <= time.monotonic():
            _, _, out, packet = heapq.heappop(queue)
            try:
                os.write(out, packet)
            except OSError:
                pass  # the device is down: the packet is lost, as on a wire


main()
