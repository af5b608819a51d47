"""Peak resident memory (RSS) of the benchmark's processes, for bench/suite. Three meters:

  sender (the client: `ferry sync`, the rsync client)
      run_measured() starts it and reaps it with os.wait4, whose rusage.ru_maxrss is that child's
      own peak (and its waited-for children's), not the benchmark's. But Linux records the old
      address space's high-water mark at exec, and a child spawned by Python starts in Python's
      (vfork), so ru_maxrss is max(tool's peak, Python's high-water mark at the spawn). So the
      parent resets its own mark first (clear_refs 5) and reads it (~20 MiB, the "floor"): where
      ru_maxrss is above the floor it is the tool's exact peak; where not, the tool stayed under
      the floor and its figure is the last VmHWM read from /proc/PID/status (sampled every 20 ms
      while it runs: that of the tool's own address space, so it misses at most the last 20 ms).
  ferry's receiver (one daemon process; sessions are threads)
      DaemonPeak: before a stage, `echo 5 > /proc/PID/clear_refs` resets the daemon's VmHWM to
      its current RSS; after it, VmHWM from /proc/PID/status is the stage's peak (including what
      the daemon held already).
  rsync's receiver (rsyncd forks a child per connection, which forks the receiver/generator)
      DescendantSampler: a thread lists the daemon's descendants (a /proc scan every 100 ms) and
      reads VmHWM and VmRSS of each every 20 ms. A process's peak is the last VmHWM read before it
      exits (it is a high-water mark, so a sample missed only hides the last <=20 ms of growth);
      the receiver's figure is the largest such peak of one process. The peak of the sum over all
      descendants at one sample (VmRSS) is kept too, in the JSON.

Threading: DescendantSampler runs one thread of its own; the rest is called from one thread."""
import os
import subprocess
import threading


def status_fields(pid, names=("VmHWM", "VmRSS")):
    """{name: bytes} from /proc/PID/status (kB lines), or None if the process is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in names:
                    out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return out


def reset_peak(pid="self"):
    """Resets the high-water mark of a process's RSS to its current RSS (kernel >= 4.0)."""
    with open("/proc/%s/clear_refs" % pid, "w") as f:
        f.write("5\n")


def run_measured(cmd, stdout=None, stderr=None):
    """Runs cmd to the end. Returns (exit code, {"peak_bytes": the child's peak RSS, "method":
    "wait4" or "sampled", and the figures behind them})."""
    reset_peak()  # else the child's ru_maxrss starts at this Python's lifetime peak
    floor = status_fields(os.getpid())["VmHWM"]
    p = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
    sampler = DescendantSampler(p.pid, include_root=True)
    sampler.start()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    sampled = sampler.stop()["processes"].get(str(p.pid), {}).get("peak_bytes")
    ru_maxrss = usage.ru_maxrss * 1024
    out = {"ru_maxrss_bytes": ru_maxrss, "spawn_floor_bytes": floor, "sampled_peak_bytes": sampled}
    if ru_maxrss > floor or sampled is None:
        out.update(peak_bytes=ru_maxrss, method="wait4" if ru_maxrss > floor else "floor")
    else:
        out.update(peak_bytes=sampled, method="sampled")
    return p.returncode, out


class DaemonPeak:
    """The peak RSS of one long-lived process over an interval: reset() then peak()."""

    def __init__(self, pid):
        self.pid = pid

    def reset(self):
        reset_peak(self.pid)
        return status_fields(self.pid)["VmRSS"]

    def peak(self):
        return status_fields(self.pid)["VmHWM"]


def children_map():
    """{ppid: [pid, ...]} for every process, from /proc/PID/stat."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry.name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses: split after the last ")".
        fields = stat[stat.rindex(b")") + 2:].split()
        out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


class DescendantSampler(threading.Thread):
    """Samples the RSS of every descendant of root_pid (and of root_pid with include_root) until
    stop()."""

    def __init__(self, root_pid, include_root=False, interval_s=0.02, scan_every=5):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.include_root = include_root
        self.interval_s = interval_s
        self.scan_every = scan_every
        self.stopping = threading.Event()
        self.procs = {}  # pid -> {"comm", "peak_bytes" (VmHWM), "max_rss_bytes" (VmRSS)}
        self.peak_sum_bytes = 0
        self.samples = 0

    def descendants(self):
        tree = children_map()
        out = [self.root_pid] if self.include_root else []
        todo = list(tree.get(self.root_pid, []))
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(tree.get(pid, []))
        return out

    def run(self):
        pids = []
        tick = 0
        while True:
            stopping = self.stopping.is_set()  # one last sample after stop()
            if tick % self.scan_every == 0 or stopping:
                pids = self.descendants()
            tick += 1
            total = 0
            for pid in pids:
                fields = status_fields(pid)
                if not fields or "VmHWM" not in fields:
                    continue  # gone, or a zombie
                p = self.procs.setdefault(pid, {"comm": comm(pid), "peak_bytes": 0,
                                                "max_rss_bytes": 0})
                p["peak_bytes"] = max(p["peak_bytes"], fields["VmHWM"])
                p["max_rss_bytes"] = max(p["max_rss_bytes"], fields["VmRSS"])
                total += fields["VmRSS"]
            self.peak_sum_bytes = max(self.peak_sum_bytes, total)
            self.samples += 1
            if stopping:
                return
            self.stopping.wait(self.interval_s)

    def stop(self):
        """Stops sampling; returns the summary for the JSON."""
        self.stopping.set()
        self.join()
        largest = max((p["peak_bytes"] for p in self.procs.values()), default=None)
        return {"largest_process_peak_bytes": largest, "peak_sum_bytes": self.peak_sum_bytes,
                "samples": self.samples,
                "processes": {str(pid): p for pid, p in sorted(self.procs.items())}}
