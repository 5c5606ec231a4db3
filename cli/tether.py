"""Prefect's temporary API server ends with the command that started it, however the command ends.

Without a Prefect server configured, a flow run started by ``affectflow`` makes Prefect start a temporary
API server: a ``python -m uvicorn`` child process, stopped at the command's normal exit (``atexit``). A
command killed outright (SIGKILL, the out-of-memory killer) runs no exit code: that server used to stay,
orphaned, holding its port and the home's Prefect database, until someone found it.

``tether()`` (the CLI calls it before running flows) hands Prefect a server object of its own kind that, as
it starts the server process, tells a small watchdog process its pid. The watchdog reads a pipe whose
other end only this command holds: the pipe closes when the command ends, whatever ends it, and the watchdog
then stops the server (SIGTERM, SIGKILL after 5 s) unless it has already stopped. It starts the moment the
server starts, in its own session (a Ctrl-C to the terminal does not stop it first), and costs ~20 MB.

This leans on two internals of Prefect 3.8's ``SubprocessASGIServer`` (one instance per port, kept in
``_instances``; ``_run_uvicorn_command`` starts the process); ``tests/faults/test_crashed_runs.py`` kills a
real ``affectflow train`` and fails if a server outlives it.

    python -m cli.tether   # the watchdog: pid and start time per line on stdin; EOF: stop them
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

GRACE_S = 5.0


class _Watchdog:
    """The watchdog process of this command, started on the first ``watch``."""

    def __init__(self) -> None:
        self._pipe: int | None = None

    def watch(self, pid: int) -> None:
        import psutil

        if self._pipe is None:
            read, write = os.pipe()  # neither end is inherited by other children (close-on-exec)
            subprocess.Popen([sys.executable, "-m", "cli.tether"], stdin=read, stdout=subprocess.DEVNULL,
                             start_new_session=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            os.close(read)
            self._pipe = write
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            return  # already gone
        os.write(self._pipe, f"{pid} {started:.3f}\n".encode())


_WATCHDOG = _Watchdog()


_TETHERED: list[type] = []


def _tethered_class() -> type:
    """``SubprocessASGIServer`` telling the watchdog the pid of each server process it starts (made once,
    on first use: the watchdog process itself never imports Prefect's server)."""
    if not _TETHERED:
        from prefect.server.api.server import SubprocessASGIServer

        class TetheredServer(SubprocessASGIServer):
            def _run_uvicorn_command(self):
                process = super()._run_uvicorn_command()
                _WATCHDOG.watch(process.pid)
                return process

        _TETHERED.append(TetheredServer)
    return _TETHERED[0]


def tether() -> None:
    """Make the temporary Prefect server that this process may start stop when this process ends, however
    it ends. Costs nothing when a server (``PREFECT_API_URL``) is configured: then no temporary one starts."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    tethered = _tethered_class()
    current = SubprocessASGIServer._instances.get(None)
    if current is None:
        tethered()  # registers itself as the instance Prefect's clients use (no port chosen)
    elif not isinstance(current, tethered) and getattr(current, "server_process", None) is not None:
        _WATCHDOG.watch(current.server_process.pid)  # started before: watched as it is


def _stop(targets: list[tuple[int, float]]) -> None:
    import psutil

    alive = []
    for pid, started in targets:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - started) < 1.0:  # the same process, not a reused pid
                process.terminate()
                alive.append(process)
        except psutil.Error:
            continue
    _, left = psutil.wait_procs(alive, timeout=GRACE_S)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            pass


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    targets = []
    for line in sys.stdin:  # blocks until the command that started this watchdog has ended
        pid, started = line.split()
        targets.append((int(pid), float(started)))
    _stop(targets)  # after a normal exit the server has stopped already (atexit): nothing left to do


if __name__ == "__main__":
    main()
