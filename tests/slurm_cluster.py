"""A real single-node SLURM cluster with accounting on localhost, for the end-to-end tests.

`start_cluster()` installs the Debian packages when they are missing (root only), then starts
munge, MariaDB, slurmdbd, slurmctld and slurmd by hand (there is no systemd), registers the
cluster with the accounting database and waits until `sinfo` shows the node idle. Every daemon
it starts writes its pid file into the cluster's own state directory, so `Cluster.stop()` stops
exactly those processes and nothing else. When a cluster answers already (started by an earlier
test session or `scripts/slurm-cluster.sh start`), it is reused and left running.

The recipe and its pitfalls are in environment.md ("A real single-node SLURM cluster"):
accounting is required (without sacct submitit never sees a cancelled job end) and
AuthInfo=cred_expire=10 keeps a requeued job from waiting two minutes. A requeued job is
eligible again cred_expire + 1 s after its requeue but starts only at the next scheduling
pass (every 60 s, backfill every 30 s, by default): sched_interval=2,bf_interval=2 restart it
some 12 s after its requeue.

    python -m tests.slurm_cluster start|stop|status   (the shell front end calls this)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path(os.environ.get("ND_AUDIT_SLURM_DIR", "/tmp/nd-audit-slurm"))
CLUSTER_NAME = "ndaudit"
DB_PORT = 13306  # not MariaDB's default, so a database server already on 3306 is left alone
DBD_PORT = 6819
APT_PACKAGES = (
    "slurmctld",
    "slurmd",
    "slurm-client",
    "munge",
    "slurmdbd",
    "mariadb-server",
    "dataset-fashion-mnist",
)
# program -> the package that ships it; a missing one triggers the apt install
PROGRAMS = {
    "sbatch": "slurm-client",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "munged": "munge",
    "slurmdbd": "slurmdbd",
    "mariadbd": "mariadb-server",
}
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# daemons in start order; teardown goes the other way
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be started here (not root and not installed, or a daemon failed)."""


@dataclass
class Cluster:
    state_dir: Path
    conf: Path  # slurm.conf; exported as SLURM_CONF to every client and job
    started: list[str] = field(default_factory=list)  # daemons this process started

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def stop(self) -> None:
        """Stop the daemons this object started (pids read before killing), nothing else."""
        if "slurmctld" in self.started:
            _cancel_all_jobs(self.env)
        for daemon in reversed(DAEMONS):
            if daemon in self.started:
                _kill_pidfile(self.state_dir / "pids" / f"{daemon}.pid")
        self.started.clear()


def _run(cmd: list[str], env: dict | None = None, check: bool = True, timeout: float = 60):
    return subprocess.run(
        cmd, env=env, check=check, capture_output=True, text=True, timeout=timeout
    )


def ensure_installed() -> None:
    """apt-get install the SLURM, munge, MariaDB and Fashion-MNIST packages when missing."""
    missing = [prog for prog in PROGRAMS if not _which(prog)]
    if not missing and FASHION_MNIST.is_dir():
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(
            f"missing {', '.join(missing) or 'Fashion-MNIST'}; installing needs root "
            f"(apt-get install {' '.join(APT_PACKAGES)})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], env=env, timeout=600)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES], env, timeout=1200)


def _which(prog: str) -> str | None:
    return shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/sbin:/usr/bin")


def running_cluster() -> Cluster | None:
    """A cluster that answers already: ours from an earlier session, or the system's."""
    candidates = [STATE_DIR / "etc" / "slurm.conf", Path("/etc/slurm/slurm.conf")]
    if os.environ.get("SLURM_CONF"):
        candidates.insert(0, Path(os.environ["SLURM_CONF"]))
    for conf in candidates:
        env = {**os.environ, "SLURM_CONF": str(conf)}
        if conf.exists() and _node_ready(env, wait=0) and _accounting_works(env):
            return Cluster(conf.parent.parent, conf)
    return None


def _accounting_works(env: dict) -> bool:
    """Without sacct submitit never sees a cancelled job end: such a cluster is no use."""
    try:
        return _run(["sacct", "-n", "-X"], env=env, check=False, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_cluster(state_dir: Path = STATE_DIR) -> Cluster:
    """Reuse a running cluster, or install (if needed) and start one. Idempotent."""
    found = running_cluster()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting the daemons needs root")
    ensure_installed()
    cluster = Cluster(state_dir, state_dir / "etc" / "slurm.conf")
    try:
        _prepare_dirs(state_dir)
        _write_configs(state_dir)
        _start_munge(cluster)
        _start_mariadb(cluster)
        _start_slurmdbd(cluster)
        _start_slurm(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _prepare_dirs(state: Path) -> None:
    for sub in ("etc", "pids", "log", "ctld", "spool"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "pids").chmod(0o1777)  # munged and mariadbd write their pid files as themselves
    (state / "log").chmod(0o1777)


def _write_configs(state: Path) -> None:
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
    (state / "etc" / "slurm.conf").write_text(
        f"""ClusterName={CLUSTER_NAME}
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/pids/slurmctld.pid
SlurmdPidFile={state}/pids/slurmd.pid
SlurmctldLogFile={state}/log/slurmctld.log
SlurmdLogFile={state}/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={DBD_PORT}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MinJobAge=600
KillWait=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    dbd = state / "etc" / "slurmdbd.conf"
    dbd.write_text(
        f"""AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={DBD_PORT}
SlurmUser=root
PidFile={state}/pids/slurmdbd.pid
LogFile={state}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={DB_PORT}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
"""
    )
    dbd.chmod(0o600)  # slurmdbd refuses a readable config (it holds the database password)


def _start_munge(cluster: Cluster) -> None:
    if _run(["bash", "-c", "munge -n | unmunge"], check=False).returncode == 0:
        return  # the system's munged is up; not ours to stop
    key = Path("/etc/munge/munge.key")
    munge = pwd.getpwnam("munge")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(128))
        os.chown(key, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
    for folder in (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge")):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, munge.pw_uid, munge.pw_gid)
    pidfile = cluster.state_dir / "pids" / "munged.pid"
    _run(["runuser", "-u", "munge", "--", _which("munged"), f"--pid-file={pidfile}"])
    cluster.started.append("munged")
    _wait_for(
        lambda: _run(["bash", "-c", "munge -n | unmunge"], check=False).returncode == 0,
        "munged to answer",
        15,
    )


def _start_mariadb(cluster: Cluster) -> None:
    state = cluster.state_dir
    datadir, rundir = state / "mysql", state / "mysqld"
    mysql = pwd.getpwnam("mysql")
    rundir.mkdir(exist_ok=True)
    os.chown(rundir, mysql.pw_uid, mysql.pw_gid)
    if not (datadir / "mysql").is_dir():
        datadir.mkdir(exist_ok=True)
        os.chown(datadir, mysql.pw_uid, mysql.pw_gid)
        _run(
            [
                "mariadb-install-db",
                "--user=mysql",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            timeout=180,
        )
    socket_path = rundir / "mysqld.sock"
    subprocess.Popen(
        [
            _which("mariadbd"),
            "--no-defaults",
            "--user=mysql",
            f"--datadir={datadir}",
            f"--socket={socket_path}",
            f"--pid-file={state}/pids/mariadbd.pid",
            "--bind-address=127.0.0.1",
            f"--port={DB_PORT}",
            f"--log-error={state}/log/mariadb.log",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster.started.append("mariadbd")
    client = ["mariadb", f"--socket={socket_path}", "-uroot"]
    _wait_for(
        lambda: _run([*client, "-e", "select 1"], check=False).returncode == 0,
        "MariaDB to answer",
        60,
    )
    sql = (
        "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
        "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
        "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';"
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    )
    _run([*client, "-e", sql])


def _start_slurmdbd(cluster: Cluster) -> None:
    _run([_which("slurmdbd")], env=cluster.env)
    cluster.started.append("slurmdbd")
    _wait_for(lambda: _port_open(DBD_PORT), "slurmdbd to listen", 30)
    add = ["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME]
    _wait_for(
        lambda: _run(add, env=cluster.env, check=False).returncode in (0, 1),
        "sacctmgr to answer",
        30,
    )


def _start_slurm(cluster: Cluster) -> None:
    _run([_which("slurmctld"), "-c"], env=cluster.env)  # -c: no jobs from an earlier life
    cluster.started.append("slurmctld")
    _run([_which("slurmd")], env=cluster.env)
    cluster.started.append("slurmd")
    if not _node_ready(cluster.env, wait=60):
        log = (cluster.state_dir / "log" / "slurmctld.log").read_text()[-2000:]
        raise ClusterUnavailable(f"the node did not become idle within 60 s; slurmctld.log:\n{log}")
    _wait_for(
        lambda: _run(["sacct", "-n", "-X"], env=cluster.env, check=False).returncode == 0,
        "sacct to answer",
        30,
    )


def _node_ready(env: dict, wait: float) -> bool:
    """Whether sinfo shows the node idle (or busy with jobs), polling for up to `wait` s."""

    def ready() -> bool:
        try:
            out = _run(["sinfo", "-h", "-o", "%T"], env=env, check=False, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        states = out.stdout.split()
        return (
            out.returncode == 0
            and bool(states)
            and all(s.rstrip("*") in ("idle", "mixed", "allocated", "completing") for s in states)
        )

    deadline = time.monotonic() + wait
    while True:
        if ready():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _wait_for(predicate, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"timed out waiting for {what}")
        time.sleep(0.3)


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _cancel_all_jobs(env: dict) -> None:
    """Our cluster's jobs would outlive slurmd as orphaned slurmstepd processes."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        _run(["scancel", "--full", "-u", pwd.getpwuid(os.getuid()).pw_name], env=env, check=False)
        _wait_for(
            lambda: not _run(["squeue", "-h"], env=env, check=False).stdout.strip(),
            "jobs to end",
            20,
        )


def _kill_pidfile(pidfile: Path, timeout: float = 15) -> None:
    """SIGTERM the pid in `pidfile` (read first: slurm daemons delete theirs on exit)."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


def _reap(pid: int) -> None:
    """Collect an exited child (mariadbd is ours): a zombie would look alive to kill(pid, 0)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


VERBS = ("start", "stop", "status")


def main(argv: list[str]) -> int:
    verb = argv[0] if argv else "status"
    if verb not in VERBS or len(argv) > 1:
        print(
            f"usage: slurm-cluster.sh [{'|'.join(VERBS)}] (got {' '.join(argv)})", file=sys.stderr
        )
        return 2
    if verb == "start":
        try:
            cluster = start_cluster()
        except (ClusterUnavailable, OSError, subprocess.SubprocessError) as exc:
            print(f"slurm-cluster: cannot start the cluster: {exc}", file=sys.stderr)
            return 1
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    if verb == "stop":
        # stop what a `start` in another process began (identified by our pid files)
        cluster = Cluster(STATE_DIR, STATE_DIR / "etc" / "slurm.conf", list(DAEMONS))
        cluster.stop()
        return 0
    found = running_cluster()
    print(f"running, SLURM_CONF={found.conf}" if found else "not running")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
