#!/usr/bin/env python3
"""The PostgreSQL cutover benchmark (issue 19's case): PostgreSQL 15 under pgbench (scale 20 by
default) and an acknowledged-insert writer, two ferry daemons on loopback, `ferry migrate` with
pg_ctl hooks. Each configuration starts from a fresh cluster:

  guess       the hooks without estimates, cut over on the lower bound (policy
              cutover_on_lower_bound: what ferry did before it refused to)
  rehearsed   policy rehearse: true (check_target, stop_target): the hooks' times measured
  prepared    rehearsed, and prepare_source: CHECKPOINT just before the quiesce (a short
              shutdown checkpoint)
  rsync       the baseline: rsync while the database runs, then stop, rsync -a --delete, start

It prints each one's predicted and actual downtime with the split by step, checks that every
acknowledged row is on the target and that pg_amcheck is clean, and writes bench/results/pg-migrate.json.

  python3 bench/pg_migrate.py FERRY [--scale 20] [--only NAME,...] [--out FILE]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemons  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(TOP, "tests", "apps", "postgres_app.py")


def app(*args, check=True):
    r = subprocess.run([sys.executable, APP] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("postgres_app.py %s: %s" % (" ".join(map(str, args)), r.stdout))
    return r


def hook(*args):
    return "{run: [%s, %s, %s], timeout: 120s}" % (sys.executable, APP, ", ".join(str(a) for a in args))


class Case:
    def __init__(self, work, scale):
        self.work, self.scale = work, scale
        os.chmod(work, 0o755)
        self.src, self.dst = os.path.join(work, "src"), os.path.join(work, "dst")
        self.ssock, self.dsock = os.path.join(work, "sock-src"), os.path.join(work, "sock-dst")
        self.sport, self.dport = daemons.free_port(), daemons.free_port()
        os.makedirs(self.dst)
        app("init", self.src)
        app("start", self.src, self.sport, self.ssock, os.path.join(work, "source.log"))
        app("prepare", self.sport, self.ssock, scale)
        self.load()

    def load(self):
        app("writer", self.sport, self.ssock, os.path.join(self.work, "acked"), os.path.join(self.work, "writer.pid"))
        app("pgbench", self.sport, self.ssock, os.path.join(self.work, "pgbench.pid"))

    def unload(self):
        for pid in ("writer.pid", "pgbench.pid"):
            app("kill", os.path.join(self.work, pid), check=False)

    def check_target(self):
        missing = app("missing", self.dport, self.dsock, os.path.join(self.work, "acked"), check=False)
        amcheck = app("amcheck", self.dport, self.dsock, check=False)
        return {"acknowledged_rows_missing": missing.returncode != 0, "missing_says": missing.stdout.strip(),
                "amcheck_clean": amcheck.returncode == 0}

    def close(self):
        self.unload()
        for d in (self.src, self.dst):
            app("stop", d, check=False)


def migrate(ferry, case, name):
    work = case.work
    sproc, sport = daemons.start_ferry(ferry, case.src, os.path.join(work, "a"), os.path.join(work, "a.log"))
    tproc, tport = daemons.start_ferry(ferry, case.dst, os.path.join(work, "b"), os.path.join(work, "b.log"))
    try:
        policy = "max_downtime: 15s, min_stages: 2, max_stages: 10"
        hooks = ["  quiesce_source: " + hook("stop", case.src),
                 "  start_target: " + hook("start", case.dst, case.dport, case.dsock, os.path.join(work, "target.log")),
                 "  resume_source: " + hook("start", case.src, case.sport, case.ssock, os.path.join(work, "source.log"))]
        if name == "guess":
            policy += ", cutover_on_lower_bound: true"
        else:
            policy += ", rehearse: true"
            hooks += ["  check_target: " + hook("check", case.dport, case.dsock),
                      "  stop_target: " + hook("stop", case.dst)]
        if name == "prepared":
            hooks.append("  prepare_source: " + hook("checkpoint", case.sport, case.ssock))
        plan = os.path.join(work, "plan.yaml")
        with open(plan, "w") as f:
            f.write("name: pg-bench\nsource: ferry://127.0.0.1:%d\ntarget: ferry://127.0.0.1:%d\n"
                    "auth: {insecure: true}\npairs:\n  - {source: bench, target: bench}\n"
                    "exclude: [postmaster.pid, postmaster.opts]\npolicy: {%s}\nhooks:\n%s\n"
                    % (sport, tport, policy, "\n".join(hooks)))
        state = os.path.join(work, "coordinator")
        started = time.time()
        r = subprocess.run([ferry, "migrate", "--state-dir", state, plan], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        took = time.time() - started
        status = json.loads(subprocess.run([ferry, "status", "--json", "--state-dir", state, plan],
                                           stdout=subprocess.PIPE, text=True).stdout)
        if r.returncode != 0:
            raise RuntimeError("ferry migrate (%s) exited %d:\n%s" % (name, r.returncode, r.stdout))
        out = {"case": name, "migrate_s": round(took, 1), "predicted_s": status.get("cutover_predicted_downtime_s"),
               "actual_s": status.get("actual_downtime_s"),
               "predicted_split": {p["step"]: p["seconds"] for p in status.get("cutover_predicted_split", [])},
               "actual_split": {p["step"]: p["seconds"] for p in status.get("actual_split", [])},
               "stages": [{k: st.get(k) for k in ("stage", "kind", "started_unix_ms", "seconds", "bytes_changed")}
                          for st in status.get("stages", [])]}
        out.update(case.check_target())
        return out
    finally:
        for p in (sproc, tproc):
            p.terminate()
            p.wait()


def rsync_baseline(case):
    """What the rsync-based tools do: copy while it runs, then stop, copy again, start."""
    subprocess.run(["rsync", "-aHAX", "--delete", "--numeric-ids", "--exclude=postmaster.pid",
                    "--exclude=postmaster.opts", case.src + "/", case.dst + "/"], check=False)
    started = time.time()
    app("stop", case.src)
    subprocess.run(["rsync", "-aHAX", "--delete", "--numeric-ids", "--exclude=postmaster.pid",
                    "--exclude=postmaster.opts", case.src + "/", case.dst + "/"], check=True)
    app("start", case.dst, case.dport, case.dsock, os.path.join(case.work, "target.log"))
    out = {"case": "rsync", "actual_s": round(time.time() - started, 3), "predicted_s": None}
    out.update(case.check_target())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ferry")
    ap.add_argument("--scale", default="20")
    ap.add_argument("--only", default="guess,rehearsed,prepared,rsync")
    ap.add_argument("--load-seconds", type=float, default=10)
    ap.add_argument("--out", default=os.path.join(TOP, "bench", "results", "pg-migrate.json"))
    a = ap.parse_args()
    results = []
    for name in a.only.split(","):
        work = tempfile.mkdtemp(prefix="ferry-pg-")
        case = None
        try:
            case = Case(work, a.scale)
            time.sleep(a.load_seconds)  # the database busy before the first stage
            results.append(rsync_baseline(case) if name == "rsync" else migrate(os.path.abspath(a.ferry), case, name))
        finally:
            if case:
                case.close()
            shutil.rmtree(work, ignore_errors=True)
        r = results[-1]
        split = "  ".join("%s %.2f/%.2f" % (k, r["predicted_split"].get(k, 0), v)
                          for k, v in r.get("actual_split", {}).items())
        print("%-10s predicted %s  actual %.2f s  rows missing: %s  amcheck clean: %s  %s" % (
            name, "-" if r["predicted_s"] is None else "%.2f s" % r["predicted_s"], r["actual_s"],
            r["acknowledged_rows_missing"], r["amcheck_clean"], ("(predicted/actual) " + split) if split else ""),
            flush=True)
    with open(a.out, "w") as f:
        json.dump({"scale": a.scale, "results": results}, f, indent=1)
    print("wrote " + a.out)


if __name__ == "__main__":
    main()
