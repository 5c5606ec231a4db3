"""The operations stack on one machine: PostgreSQL, the Prefect server, the MLflow server and a worker.

``affectflow servers up`` (what ``make up`` runs) starts them bound to loopback by default, each as its own
process group, and ``down`` stops them; the data stays. Everything lives under ``<home>/servers/``:

- ``postgres/data``: a PostgreSQL cluster of the project's own (password auth, TCP only), databases
  ``prefect`` and ``mlflow``; ``postgres/postgres.log`` its log;
- ``mlflow-artifacts/``: MLflow's proxied artifact store (clients upload through the server);
- ``prefect/``: the Prefect server's home; ``logs/``: the servers' and the worker's logs;
- ``state.json``: ports and process ids; ``secret``: the database password (mode 600).

Ports are chosen once (``PGPORT``, 4200 and 5000 when free, else any free port) and kept, so the exports
that ``up`` prints stay valid across restarts.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from affectflow.config import get_paths
from affectflow.errors import UserError

DATABASES = ("prefect", "mlflow")
DB_USER = "affectflow"
WORK_POOL = "affectflow"
GPU_POOL = "affectflow-gpu"
TRAINING_LIMIT = "training"  # the global concurrency limit around model fitting (one fit per device)
PROJECT_DIR = Path(__file__).resolve().parent.parent
OPS_DIR = PROJECT_DIR / "ops"
POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there, else a port the kernel picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise UserError(f"no free port on {host}")


def postgres_tool(name: str) -> str:
    """A PostgreSQL server program (``initdb``, ``pg_ctl``): Debian keeps them off the PATH."""
    found = shutil.which(name) or next((str(d / name) for d in POSTGRES_BIN_DIRS if (d / name).exists()), None)
    if found is None:
        raise UserError(f"PostgreSQL's {name} is not installed: `apt-get install postgresql` (make up does it)")
    return found


def _venv_tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class State:
    """What ``up`` chose and started: kept in ``state.json`` so ``down``/``status`` find it again."""

    host: str = "127.0.0.1"
    pg_port: int = 0
    prefect_port: int = 0
    mlflow_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)


@dataclass
class Stack:
    """The servers of one affectflow home."""

    home: Path
    project: Path = PROJECT_DIR

    @property
    def root(self) -> Path:
        return self.home / "servers"

    @property
    def cluster(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlflow-artifacts"

    def load(self) -> State:
        path = self.root / "state.json"
        return State(**json.loads(path.read_text())) if path.exists() else State()

    def save(self, state: State) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "state.json").write_text(json.dumps(asdict(state), indent=2))

    def password(self) -> str:
        path = self.root / "secret"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def database_url(self, state: State, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{DB_USER}:{self.password()}@127.0.0.1:{state.pg_port}/{database}"

    @staticmethod
    def api_urls(state: State) -> dict[str, str]:
        """The client settings that point a shell, a flow or a worker at these servers."""
        return {"PREFECT_API_URL": f"http://{state.host}:{state.prefect_port}/api",
                "MLFLOW_TRACKING_URI": f"http://{state.host}:{state.mlflow_port}"}

    # -- PostgreSQL ---------------------------------------------------------------------------------

    def _as_postgres(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """A PostgreSQL program; it refuses to run as root, so as root it runs as the ``postgres`` user."""
        tool = Path(command[0]).name
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise UserError(f"{tool} failed: "
                            + (done.stderr.strip() or done.stdout.strip())[-500:]
                            + f" (log: {self.cluster.parent / 'postgres.log'})")
        return done

    def _init_cluster(self) -> None:
        folder = self.cluster.parent
        folder.mkdir(parents=True, exist_ok=True)
        pwfile = folder / "initdb.pw"
        pwfile.write_text(self.password())
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
            if self._as_postgres(["test", "-r", str(pwfile)], check=False).returncode != 0:
                raise UserError(f"PostgreSQL runs as the 'postgres' user, which cannot reach {folder}: "
                                "let it through the folders above (chmod o+x) or choose another home")
        try:
            self._as_postgres([postgres_tool("initdb"), "-D", str(self.cluster), "-U", DB_USER,
                               f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"])
        finally:
            pwfile.unlink()

    def _start_postgres(self, state: State) -> None:
        if not (self.cluster / "PG_VERSION").exists():
            self._init_cluster()
        options = f"-p {state.pg_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        self._as_postgres([postgres_tool("pg_ctl"), "-D", str(self.cluster), "-o", options,
                           "-l", str(self.cluster.parent / "postgres.log"), "-w", "-t", "60", "start"])
        for database in DATABASES:
            self._create_database(state, database)

    def _create_database(self, state: State, database: str) -> None:
        exists = subprocess.run([postgres_tool("psql"), "-h", "127.0.0.1", "-p", str(state.pg_port), "-U", DB_USER,
                                 "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
                                capture_output=True, text=True, env={**os.environ, "PGPASSWORD": self.password()})
        if not exists.stdout.strip():
            self._pg(state, "createdb", database)

    def _postgres_running(self) -> bool:
        if not (self.cluster / "PG_VERSION").exists():
            return False
        return self._as_postgres([postgres_tool("pg_ctl"), "-D", str(self.cluster), "status"],
                                 check=False).returncode == 0

    # -- the other servers ---------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], env: Mapping[str, str]) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                       cwd=self.project, start_new_session=True)
        return process.pid

    def server_env(self, state: State) -> dict[str, str]:
        return {"PREFECT_HOME": str(self.root / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url(state, "prefect", "postgresql+asyncpg"),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def worker_env(self, state: State) -> dict[str, str]:
        """The worker and the flow runs it starts: clients of these servers, in this home and project."""
        return {**self.api_urls(state), "AFFECTFLOW_HOME": str(self.home), "AFFECTFLOW_PROJECT_DIR": str(self.project),
                "BENTOML_HOME": str(get_paths(self.home).bentoml_home), "PREFECT_HOME": str(self.root / "prefect"), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}

    def _start_prefect(self, state: State) -> None:
        state.pids["prefect"] = self._spawn("prefect", [
            _venv_tool("prefect"), "server", "start", "--host", state.host, "--port", str(state.prefect_port),
        ], self.server_env(state))

    def _start_mlflow(self, state: State) -> None:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        state.pids["mlflow"] = self._spawn("mlflow", [
            _venv_tool("mlflow"), "server", "--backend-store-uri", self.database_url(state, "mlflow"),
            "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
            "--host", state.host, "--port", str(state.mlflow_port), "--workers", "2",
        ], self.server_env(state))

    def start_worker(self, state: State, pool: str = WORK_POOL) -> int:
        """A Prefect worker for ``pool``; its flow runs inherit ``worker_env``."""
        pid = self._spawn(f"worker-{pool}", [_venv_tool("prefect"), "worker", "start", "--pool", pool,
                                             "--type", "process"], self.worker_env(state))
        state.pids[f"worker-{pool}"] = pid
        return pid

    def prefect(self, state: State, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The ``prefect`` CLI against this stack's server; a failure is an error with Prefect's last words."""
        done = subprocess.run([_venv_tool("prefect"), "--no-prompt", *args], capture_output=True, text=True,
                              cwd=self.project, env={**os.environ, **self.worker_env(state)})
        if check and done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
            raise UserError(f"`prefect {' '.join(args)}` failed: " + " / ".join(last))
        return done

    def _configure_prefect(self, state: State) -> None:
        """Work pools, the ``training`` limit and the automations the deployments rely on (idempotent)."""
        self.prefect(state, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite")
        self.prefect(state, "work-pool", "create", GPU_POOL, "--type", "process", "--overwrite",
                     "--base-job-template", str(OPS_DIR / "pools" / f"{GPU_POOL}.json"))
        self.prefect(state, "work-pool", "set-concurrency-limit", GPU_POOL, "1")
        if self.prefect(state, "gcl", "inspect", TRAINING_LIMIT, check=False).returncode != 0:
            self.prefect(state, "gcl", "create", TRAINING_LIMIT, "--limit", "1")
        for spec in sorted((OPS_DIR / "automations").glob("*.yaml")):
            found = self.prefect(state, "automation", "inspect", _automation_name(spec), "--json", check=False)
            if found.returncode != 0 or '"name"' not in found.stdout:
                self.prefect(state, "automation", "create", "--from-file", str(spec))

    # -- the commands ----------------------------------------------------------------------------------

    def up(self, host: str = "127.0.0.1", worker: bool = True, progress=print) -> State:
        """Start whatever is not running; returns the state with ports and process ids."""
        state = self.load()
        state.host = host
        state.pg_port = state.pg_port or free_port(preferred=int(os.environ.get("PGPORT", 0)) or None)
        state.prefect_port = state.prefect_port or free_port(host, 4200)
        state.mlflow_port = state.mlflow_port or free_port(host, 5000)
        self.save(state)
        if not self._postgres_running():
            progress(f"starting PostgreSQL on 127.0.0.1:{state.pg_port} ({self.cluster})")
            self._start_postgres(state)
        urls = self.api_urls(state)
        for name, start, url in (("prefect", self._start_prefect, urls["PREFECT_API_URL"]),
                                 ("mlflow", self._start_mlflow, urls["MLFLOW_TRACKING_URI"])):
            if not _alive(state.pids.get(name)):
                progress(f"starting the {name} server on {url}")
                start(state)
                self.save(state)
            wait_healthy(url + "/health", name, self.logs / f"{name}.log", process=state.pids[name])
        self._configure_prefect(state)
        if worker and not _alive(state.pids.get(f"worker-{WORK_POOL}")):
            progress(f"starting a worker for the '{WORK_POOL}' pool")
            self.start_worker(state)
        self.save(state)
        return state

    def down(self, progress=print) -> None:
        """Stop the worker(s), the servers and PostgreSQL; every store is kept."""
        state = self.load()
        for name in sorted(state.pids, key=lambda n: not n.startswith("worker")):  # workers first
            if _alive(state.pids[name]):
                progress(f"stopping {name}")
                stop_group(state.pids[name])
        state.pids = {}
        self.save(state)
        if self._postgres_running():
            progress("stopping PostgreSQL")
            self._as_postgres([postgres_tool("pg_ctl"), "-D", str(self.cluster), "-m", "fast", "stop"])

    def backup(self, target: Path, progress=print) -> Path:
        """Both databases (``pg_dump`` custom format) and MLflow's artifact store into ``target``; the servers
        keep running (a dump is a consistent snapshot)."""
        state = self.load()
        if not self._postgres_running():
            raise UserError("PostgreSQL is not running: `affectflow servers up` first")
        target.mkdir(parents=True, exist_ok=True)
        for database in DATABASES:
            progress(f"dumping {database} -> {target / f'{database}.dump'}")
            self._pg(state, "pg_dump", "-Fc", "-f", str(target / f"{database}.dump"), database)
        progress(f"archiving {self.artifacts}")
        shutil.make_archive(str(target / "mlflow-artifacts"), "gztar", root_dir=self.artifacts)
        return target

    def restore(self, source: Path, progress=print) -> State:
        """Replace both databases and the artifact store with a ``backup``; servers and worker are restarted
        (they must not hold connections to the databases being replaced)."""
        missing = [name for name in (*(f"{d}.dump" for d in DATABASES), "mlflow-artifacts.tar.gz")
                   if not (source / name).exists()]
        if missing:
            raise UserError(f"{source} is not a backup: {', '.join(missing)} missing")
        state = self.load()
        for name in list(state.pids):
            stop_group(state.pids.pop(name))
        self.save(state)
        if not self._postgres_running():
            self._start_postgres(state)
        for database in DATABASES:
            progress(f"restoring {database} from {source / f'{database}.dump'}")
            self._pg(state, "dropdb", "--if-exists", "--force", database)
            self._pg(state, "createdb", database)
            self._pg(state, "pg_restore", "--no-owner", "-d", database, str(source / f"{database}.dump"))
        progress(f"restoring {self.artifacts}")
        shutil.rmtree(self.artifacts, ignore_errors=True)
        shutil.unpack_archive(str(source / "mlflow-artifacts.tar.gz"), str(self.artifacts))
        return self.up(host=state.host, progress=progress)

    def _pg(self, state: State, tool: str, *args: str) -> None:
        """A PostgreSQL client program against this cluster, as its owner (over TCP, with the password)."""
        done = subprocess.run([postgres_tool(tool), "-h", "127.0.0.1", "-p", str(state.pg_port), "-U", DB_USER,
                               *args], capture_output=True, text=True, env={**os.environ, "PGPASSWORD": self.password()})
        if done.returncode != 0:
            raise UserError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()[-500:]}")

    def status(self) -> dict[str, str]:
        """Each component: running where, or stopped."""
        state = self.load()
        urls = self.api_urls(state)
        where = {"postgres": f"127.0.0.1:{state.pg_port} ({self.cluster})", "prefect": urls["PREFECT_API_URL"],
                 "mlflow": urls["MLFLOW_TRACKING_URI"]}
        report = {"postgres": f"running on {where['postgres']}" if self._postgres_running() else "stopped"}
        for name, pid in sorted(state.pids.items()):
            report[name] = (f"running (pid {pid}) {where.get(name, '')}".rstrip() if _alive(pid)
                            else "stopped (died: see " + str(self.logs / f"{name}.log") + ")")
        for name in ("prefect", "mlflow", f"worker-{WORK_POOL}"):
            report.setdefault(name, "stopped")
        return report


def _automation_name(spec: Path) -> str:
    for line in spec.read_text().splitlines():
        if line.startswith("name:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise UserError(f"{spec}: an automation needs a name")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_group(pid: int, grace: float = 20.0) -> None:
    """SIGTERM the process group (twice: a Prefect worker ignores the first), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace / 2
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)


def wait_healthy(url: str, name: str, log: Path, process: int | None = None, timeout: float = 180.0) -> None:
    """Poll ``url`` until it answers 200; a dead process or a timeout is an error that names the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process is not None and not _alive(process):
            raise UserError(f"the {name} server exited while starting: see {log}")
        time.sleep(0.5)
    raise UserError(f"the {name} server did not answer {url} within {timeout:.0f} s: see {log}")
