"""The daemons bench/suite syncs into, on loopback: `ferry daemon` and `rsync --daemon`, each
started in the foreground as a child of the benchmark and waited for until it accepts."""
import re
import socket
import subprocess
import time


class DaemonError(Exception):
    pass


def start_ferry(ferry, volume_path, state_dir, log_path):
    """Returns (Popen, port) of a ferry daemon serving volume_path as volume "bench"."""
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([ferry, "daemon", "--listen", "127.0.0.1:0", "--volume",
                                 "bench=" + volume_path, "--state-dir", state_dir, "--insecure"],
                                stderr=err)
    for _ in range(200):
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(log_path).read())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise DaemonError("ferry daemon exited:\n" + open(log_path).read())
        time.sleep(0.05)
    proc.kill()
    raise DaemonError("ferry daemon did not say where it listens:\n" + open(log_path).read())


def start_rsync(module_path, conf_path, log_path):
    """Returns (Popen, port) of an rsync daemon serving module_path as module "bench"."""
    with open(conf_path, "w") as f:  # chroot: else rsyncd munges symlinks or strips their leading /
        f.write("use chroot = yes\nmunge symlinks = no\nnumeric ids = yes\n[bench]\npath = %s\n"
                "read only = no\nuid = root\ngid = root\n" % module_path)
    with socket.socket() as s:  # a free port (in a private network namespace every port is)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", "--address=127.0.0.1",
                             "--port=%d" % port, "--config=" + conf_path, "--log-file=" + log_path])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise DaemonError("rsync daemon did not start (log: %s)" % log_path)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
