"""A Spark standalone cluster (a master, one or more workers) from the installed pyspark, for tests.

pyspark's wheel has no ``sbin/start-*.sh``; its ``bin/spark-class`` starts the master and the
worker as plain JVM processes. This script starts them on 127.0.0.1 (free ports unless given),
waits until the worker has registered with the master, records what it started in
``<work-dir>/cluster.json``, and stops exactly those processes (each in its own process group,
so the executors and Python workers they spawned go with them)::

    python scripts/standalone_cluster.py start --work-dir /tmp/qm-cluster   # prints the master URL
    spark-submit --master spark://127.0.0.1:PORT ... jobs/annotate.py ...
    python scripts/standalone_cluster.py stop --work-dir /tmp/qm-cluster

    python scripts/standalone_cluster.py master --port 7077             # foreground (containers)
    python scripts/standalone_cluster.py worker spark://master:7077      # foreground (containers)

Only the standard library is used; it runs with the interpreter that has pyspark installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """The installed pyspark package: its bin/spark-class and jars/ are a Spark distribution."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def spark_class(main_class: str, *args: str) -> list[str]:
    return [str(spark_home() / "bin" / "spark-class"), main_class, *args]


def cluster_env(host: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SPARK_HOME", str(spark_home()))
    env["SPARK_LOCAL_IP"] = host
    # The jobs choose their Python code (spark-submit --py-files / the packed env); the daemons must
    # not hand this shell's PYTHONPATH to every executor.
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Cluster:
    """A running master and worker(s) this script started (their process ids and addresses)."""

    master_url: str
    master_ui: str
    master_pid: int
    worker_pid: int  # the first worker
    work_dir: str
    worker_pids: list[int] = field(default_factory=list)  # every worker, the first included

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers, then the master: SIGTERM to each process group, SIGKILL if it lingers."""
        for pid in (*(self.worker_pids or [self.worker_pid]), self.master_pid):
            _stop_group(pid, timeout)

    def save(self) -> Path:
        path = Path(self.work_dir) / "cluster.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, work_dir: str | Path) -> Cluster:
        return cls(**json.loads((Path(work_dir) / "cluster.json").read_text()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(pid: int, timeout: float) -> None:
    # Each daemon leads its own session (start_new_session), so its group is what it spawned.
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:  # not our child (stopped from another process): poll instead
            if not _alive(pid):
                break
        time.sleep(0.2)
    # A daemon that outlived the timeout, and anything left in its group (executors' Python workers).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _alive_workers(ui: str) -> int:
    try:
        with urllib.request.urlopen(f"{ui}/json/", timeout=2) as response:
            state = json.load(response)
    except OSError:
        return 0
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def start(
    work_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    webui_port: int = 0,
    cores: int = 2,
    memory: str = "2g",
    timeout: float = 120.0,
    workers: int = 1,
) -> Cluster:
    """Start a master and ``workers`` workers of ``cores`` cores each; return once all have
    registered (or raise and clean up)."""
    work = Path(work_dir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    port, webui_port = port or free_port(host), webui_port or free_port(host)
    env = cluster_env(host)
    master_url, ui = f"spark://{host}:{port}", f"http://{host}:{webui_port}"
    args = ["--host", host, "--port", str(port), "--webui-port", str(webui_port)]
    with open(work / "master.log", "wb") as log:
        master = subprocess.Popen(
            spark_class(MASTER_CLASS, *args), stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    # The first worker keeps the names a one-worker cluster always had (worker.log, work/).
    names = ["worker", *(f"worker-{i}" for i in range(1, workers))]
    started = []
    for name in names:
        worker_dir = work / ("work" if name == "worker" else f"work-{name}")
        worker_args = [
            "--host", host, "--port", str(free_port(host)), "--webui-port", str(free_port(host)),
            "--cores", str(cores), "--memory", memory, "--work-dir", str(worker_dir), master_url,
        ]  # fmt: skip
        with open(work / f"{name}.log", "wb") as log:
            started.append(subprocess.Popen(
                spark_class(WORKER_CLASS, *worker_args), stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            ))  # fmt: skip
    pids = [w.pid for w in started]
    cluster = Cluster(master_url, ui, master.pid, pids[0], str(work), pids)
    cluster.save()
    deadline = time.time() + timeout
    while _alive_workers(ui) < workers:
        dead = master.poll() is not None or any(w.poll() is not None for w in started)
        if dead or time.time() > deadline:
            cluster.stop()
            logs = ("master.log", *(f"{n}.log" for n in names))
            tail = "".join((work / n).read_text(errors="replace")[-1500:] for n in logs)
            raise RuntimeError(f"the standalone cluster did not come up (logs in {work}):\n{tail}")
        time.sleep(0.5)
    return cluster


def _foreground(command: list[str], host: str) -> int:
    """Run a daemon in the foreground (a container's main process); SIGTERM stops it."""
    process = subprocess.Popen(command, env=cluster_env(host))
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    return process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("start", help="start a master and its worker(s) in the background")
    p.add_argument("--work-dir", default="standalone-cluster", help="logs, worker files, cluster.json")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="master port (default: a free one)")
    p.add_argument("--webui-port", type=int, default=0, help="master web UI port (default: a free one)")
    p.add_argument("--cores", type=int, default=2, help="cores of each worker")
    p.add_argument("--memory", default="2g", help="memory of each worker")
    p.add_argument("--workers", type=int, default=1, help="how many workers (default 1)")
    p = sub.add_parser("stop", help="stop the master and worker that 'start' recorded")
    p.add_argument("--work-dir", default="standalone-cluster")
    p = sub.add_parser("master", help="run a master in the foreground")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=7077)
    p.add_argument("--webui-port", type=int, default=8080)
    p = sub.add_parser("worker", help="run a worker in the foreground")
    p.add_argument("master_url")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--memory", default="2g")
    p.add_argument("--work-dir", default="/tmp/spark-worker")
    args = parser.parse_args(argv)

    if args.action == "start":
        cluster = start(
            args.work_dir,
            args.host,
            args.port,
            args.webui_port,
            args.cores,
            args.memory,
            workers=args.workers,
        )
        workers = ", ".join(map(str, cluster.worker_pids))
        pids = f"pids master {cluster.master_pid}, worker(s) {workers}"
        stop = f"{sys.argv[0]} stop --work-dir {args.work_dir}"
        print(f"master {cluster.master_url} (web UI {cluster.master_ui}); {pids}; stop with: {stop}")
        return 0
    if args.action == "stop":
        cluster = Cluster.load(args.work_dir)
        cluster.stop()
        workers = ", ".join(map(str, cluster.worker_pids or [cluster.worker_pid]))
        print(f"stopped master {cluster.master_pid} and worker(s) {workers}")
        return 0
    if args.action == "master":
        command = ["--host", args.host, "--port", str(args.port), "--webui-port", str(args.webui_port)]
        return _foreground(spark_class(MASTER_CLASS, *command), args.host)
    command = ["--host", args.host, "--cores", str(args.cores), "--memory", args.memory]
    command += ["--work-dir", args.work_dir, args.master_url]
    return _foreground(spark_class(WORKER_CLASS, *command), args.host)


if __name__ == "__main__":
    sys.exit(main())
