#!/usr/bin/env python3
"""The real database of the PostgreSQL migration test and benchmark: a PostgreSQL 15 cluster,
pgbench, and a writer that inserts one row after another over one connection and records each
id in an acknowledgement log only after the INSERT returned it (fsynced). A migration is correct
when every id in that log is in the target's table. As root, PostgreSQL runs as the postgres user.
The port and socket directory are given at start (not in postgresql.conf): the source and the
target copy run on one machine.

  postgres_app.py init DATADIR                       initdb (checksums on), small settings
  postgres_app.py start DATADIR PORT SOCKDIR [LOG]   pg_ctl start -w (log outside DATADIR)
  postgres_app.py stop DATADIR                       pg_ctl stop -m fast -w; nothing running: exit 0
  postgres_app.py check PORT SOCKDIR                 a query answers (a check_target hook)
  postgres_app.py checkpoint PORT SOCKDIR            CHECKPOINT (a prepare_source hook)
  postgres_app.py prepare PORT SOCKDIR SCALE         pgbench -i -s SCALE and the table acked
  postgres_app.py writer PORT SOCKDIR ACKLOG PIDFILE the acknowledged-insert writer, in the background
  postgres_app.py pgbench PORT SOCKDIR PIDFILE [N]   pgbench with N clients, in the background
  postgres_app.py kill PIDFILE                       stop a background writer or pgbench
  postgres_app.py missing PORT SOCKDIR ACKLOG        every acknowledged id is in the table: exit 0
  postgres_app.py amcheck PORT SOCKDIR               pg_amcheck --heapallindexed
"""
import os
import pwd
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
BIN = "/usr/lib/postgresql/15/bin"


def as_postgres(argv):
    """argv run as the postgres user when we are root."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        sys.exit("postgres_app: running as root and there is no postgres user to run PostgreSQL as")
    return ["runuser", "-u", "postgres", "--"] + argv


def own(path):
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def run(argv, **kwargs):
    r = subprocess.run(as_postgres(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if r.returncode != 0:
        sys.stderr.write(r.stdout)
        sys.exit("postgres_app: %s exited %d" % (os.path.basename(argv[0]), r.returncode))
    return r.stdout


def psql_argv(port, sockdir, *extra):
    return [BIN + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", sockdir, "-p", port, "-U",
            "postgres", "postgres"] + list(extra)


def init(datadir):
    os.makedirs(datadir, exist_ok=True)
    os.chmod(datadir, 0o700)
    own(datadir)
    run([BIN + "/initdb", "-D", datadir, "-A", "trust", "-U", "postgres", "-k"])
    with open(os.path.join(datadir, "postgresql.conf"), "a") as conf:
        conf.write("\n# postgres_app.py\nlisten_addresses = '127.0.0.1'\nfsync = on\nsynchronous_commit = on\n"
                   "shared_buffers = 32MB\nmax_wal_size = 256MB\nlogging_collector = off\n")


def start(datadir, port, sockdir, log=None):
    os.makedirs(sockdir, exist_ok=True)
    own(sockdir)
    log = log or os.path.join(os.path.dirname(sockdir.rstrip("/")), "postgres-%s.log" % port)
    if not os.path.exists(log):
        open(log, "a").close()
    own(log)
    run([BIN + "/pg_ctl", "-D", datadir, "-w", "-t", "60", "-l", log, "-o", "-p %s -k %s" % (port, sockdir), "start"])


def stop(datadir):
    status = subprocess.run(as_postgres([BIN + "/pg_ctl", "-D", datadir, "status"]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if status.returncode in (3, 4):  # not running; not a data directory
        print("no server runs in %s" % datadir)
        return
    run([BIN + "/pg_ctl", "-D", datadir, "-m", "fast", "-w", "-t", "60", "stop"])


def check(port, sockdir):
    has = run(psql_argv(port, sockdir, "-c", "SELECT to_regclass('acked') IS NOT NULL")).strip()
    run(psql_argv(port, sockdir, "-c", "SELECT count(*) FROM acked" if has == "t" else "SELECT 1"))


def checkpoint(port, sockdir):
    run(psql_argv(port, sockdir, "-c", "CHECKPOINT"))


def prepare(port, sockdir, scale):
    run([BIN + "/pgbench", "-i", "-q", "-s", scale, "-h", sockdir, "-p", port, "-U", "postgres", "postgres"])
    run(psql_argv(port, sockdir, "-c",
                  "CREATE TABLE IF NOT EXISTS acked (id bigserial PRIMARY KEY, v text, at timestamptz DEFAULT now())"))


def background(argv, pidfile):
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d\n" % child.pid)
    os.rename(pidfile + ".tmp", pidfile)


def writer(port, sockdir, acklog, pidfile):
    before = os.path.getsize(acklog) if os.path.exists(acklog) else 0
    background([sys.executable, os.path.abspath(__file__), "write", port, sockdir, acklog], pidfile)
    for _ in range(1000):
        if os.path.exists(acklog) and os.path.getsize(acklog) > before:
            return
        time.sleep(0.01)
    sys.exit("postgres_app: the writer acknowledged nothing within 10 s")


def write(port, sockdir, acklog):
    """The writer itself: one psql as a coprocess; an id is logged only once psql returned it."""
    psql = subprocess.Popen(as_postgres(psql_argv(port, sockdir)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)
    fd = os.open(acklog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    n = 0
    while True:
        try:
            psql.stdin.write("INSERT INTO acked(v) VALUES ('row %d') RETURNING id;\n" % n)
            psql.stdin.flush()
            line = psql.stdout.readline()
        except (BrokenPipeError, OSError):
            return
        if not line.strip().isdigit():
            return  # the server went away: nothing more is acknowledged
        os.write(fd, (line.strip() + "\n").encode())
        os.fsync(fd)
        n += 1
        time.sleep(0.005)


def pgbench(port, sockdir, pidfile, clients="2"):
    background(as_postgres([BIN + "/pgbench", "-n", "-c", clients, "-j", "1", "-T", "3600", "-h", sockdir, "-p", port,
                            "-U", "postgres", "postgres"]), pidfile)


def kill(pidfile):
    try:
        pid = int(open(pidfile).read())
    except (OSError, ValueError):
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        else:
            continue
        break
    os.unlink(pidfile)


def missing(port, sockdir, acklog):
    acked = [int(line) for line in open(acklog) if line.strip()]
    have = {int(x) for x in run(psql_argv(port, sockdir, "-c", "SELECT id FROM acked")).split()}
    lost = [i for i in acked if i not in have]
    print("%d acknowledged, %d in the table, %d missing%s" % (
        len(acked), len(have), len(lost), (": " + " ".join(map(str, lost[:20]))) if lost else ""))
    sys.exit(1 if lost or not acked else 0)


def amcheck(port, sockdir):
    run(psql_argv(port, sockdir, "-c", "CREATE EXTENSION IF NOT EXISTS amcheck"))
    run([BIN + "/pg_amcheck", "-h", sockdir, "-p", port, "-U", "postgres", "--heapallindexed", "postgres"])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"init": init, "start": start, "stop": stop, "check": check, "checkpoint": checkpoint, "prepare": prepare,
     "writer": writer, "write": write, "pgbench": pgbench, "kill": kill, "missing": missing,
     "amcheck": amcheck}[cmd](*args)
