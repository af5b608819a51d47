"""The daemons bench/suite syncs into, on loopback: `ferry daemon` and `rsync --daemon`, each
started in the foreground as a child of the benchmark and waited for until it accepts."""
import os
import re
import socket
import subprocess
import time


class DaemonError(Exception):
    pass


def start_ferry(ferry, volume_path, state_dir, log_path, security=("--insecure",)):
    """Returns (Popen, port) of a ferry daemon serving volume_path as volume "bench" (plaintext,
    or with `security`, e.g. ("--psk-file", PATH))."""
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([ferry, "daemon", "--listen", "127.0.0.1:0", "--volume",
                                 "bench=" + volume_path, "--state-dir", state_dir] + list(security),
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


def free_port():
    with socket.socket() as s:  # a free port (in a private network namespace every port is)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, port, what, log_path):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise DaemonError("%s did not start (log: %s)" % (what, log_path))


def start_rsync(modules, conf_path, log_path):
    """Returns (Popen, port) of an rsync daemon serving {module name: path}."""
    with open(conf_path, "w") as f:  # chroot: else rsyncd munges symlinks or strips their leading /
        f.write("use chroot = yes\nmunge symlinks = no\nnumeric ids = yes\n")
        for name, path in modules.items():
            f.write("[%s]\npath = %s\nread only = no\nuid = root\ngid = root\n" % (name, path))
    port = free_port()
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", "--address=127.0.0.1",
                             "--port=%d" % port, "--config=" + conf_path, "--log-file=" + log_path])
    wait_listening(proc, port, "rsync daemon", log_path)
    return proc, port


def start_stunnel(work, name, accept_port, connect_port, psk_path, client):
    """Returns (Popen, accept_port) of an stunnel with a pre-shared key, as the Kubernetes rsync
    movers run it (VolSync's rsync-tls: stunnel on both ends, PSK): the server end accepts TLS
    and connects to rsyncd; the client end accepts rsync's plaintext and connects with TLS."""
    conf = os.path.join(work, name + ".conf")
    log = os.path.join(work, name + ".log")
    with open(conf, "w") as f:
        f.write("foreground = yes\npid =\ndebug = 4\n[rsync]\n%saccept = 127.0.0.1:%d\n"
                "connect = 127.0.0.1:%d\nciphers = PSK\nPSKsecrets = %s\n"
                % ("client = yes\n" if client else "", accept_port, connect_port, psk_path))
    with open(log, "wb") as out:
        proc = subprocess.Popen(["stunnel", conf], stdout=out, stderr=subprocess.STDOUT)
    wait_listening(proc, accept_port, "stunnel " + name, log)
    return proc, accept_port


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
