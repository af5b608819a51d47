#!/usr/bin/env python3
"""The migrated app of the coordinator tests: a database (SQLite in WAL mode, a real engine with a
write-ahead log) and a writer that commits one transaction after another and records each id in
an acknowledgement log only after its COMMIT returned. A migration is correct when every id in
that log is in the target's database.

  sqlite_app.py run DB ACKLOG              write until SIGTERM, then close the database cleanly
  sqlite_app.py start DB ACKLOG PIDFILE    run in the background (the hooks' start), pid in PIDFILE
  sqlite_app.py stop PIDFILE               SIGTERM the writer and wait until it is gone (quiesce)
  sqlite_app.py missing DB ACKLOG          print the acknowledged ids that DB lacks (none: exit 0)
"""
import os
import signal
import sqlite3
import sys
import time

sys.dont_write_bytecode = True


def run(db_path, ack_path):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB)")
    next_id = (db.execute("SELECT COALESCE(MAX(id), 0) FROM t").fetchone()[0] or 0) + 1
    with open(ack_path, "a") as ack:
        while not stop:
            db.execute("BEGIN")
            db.execute("INSERT INTO t (id, payload) VALUES (?, ?)", (next_id, os.urandom(2000)))
            db.execute("COMMIT")
            ack.write("%d\n" % next_id)
            ack.flush()
            next_id += 1
            time.sleep(0.002)
    db.close()


def running(pid_path):
    """The writer's pid when the one in PIDFILE runs, else None."""
    try:
        pid = int(open(pid_path).read())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return pid if b"sqlite_app.py" in f.read() else None
    except (OSError, ValueError):
        return None


def start(db_path, ack_path, pid_path):
    # Idempotent, as the coordinator asks of start hooks: a writer that runs is left running.
    if running(pid_path):
        return
    pid = os.fork()
    if pid == 0:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        run(db_path, ack_path)
        os._exit(0)
    with open(pid_path + ".tmp", "w") as f:
        f.write("%d\n" % pid)
    os.rename(pid_path + ".tmp", pid_path)


def stop(pid_path):
    pid = running(pid_path)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(1000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.01)
    sys.exit("writer %d did not stop" % pid)


def missing(db_path, ack_path):
    acked = [int(line) for line in open(ack_path) if line.strip()]
    db = sqlite3.connect(db_path)
    have = {row[0] for row in db.execute("SELECT id FROM t")}
    lost = [i for i in acked if i not in have]
    print("%d acknowledged, %d in the database, %d missing%s" % (
        len(acked), len(have), len(lost), (": " + " ".join(map(str, lost[:20]))) if lost else ""))
    sys.exit(1 if lost or not acked else 0)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"run": run, "start": start, "stop": stop, "missing": missing}[cmd](*args)
