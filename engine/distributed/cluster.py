"""Connecting to Dask: `--dask local:N` starts a LocalCluster of N worker processes on this machine,
`--dask tcp://HOST:8786` (or any scheduler address Dask takes, or a scheduler file *.json) joins a running one.

A LocalCluster lives for one call: its workers (1 thread each) and their scratch folder go when the block
ends, also on an error or a cancel. An address that no scheduler answers is a UserError naming it.
"""
from __future__ import annotations

import logging
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from engine.errors import UserError

WORKER_WAIT_S = 60.0  # how long a scheduler without workers is given to get one
_HINT = ("give local:N for N worker processes on this machine, or a running scheduler's address "
         "tcp://HOST:8786 (started with 'dask scheduler'), or its scheduler file (*.json)")


def local_workers(address: str) -> int | None:
    """`local:N` -> N (None for a scheduler address); UserError for `local:` without a positive count."""
    if not address.startswith("local"):
        return None
    count = address[len("local"):].lstrip(":")
    if not count.isdigit() or int(count) < 1:
        raise UserError(f"--dask {address}: {_HINT}")
    return int(count)


def _engine_location() -> str:
    """Runs on a worker: where its engine comes from (fails there when the engine is not installed)."""
    import engine

    return str(Path(engine.__file__).resolve().parent)


@contextmanager
def dask_client(address: str, connect_timeout_s: float | None = None) -> Iterator:
    """A distributed.Client for `--dask ADDRESS`, with at least one worker that can import the engine.

    `connect_timeout_s`: how long to try a scheduler address (None: Dask's `distributed.comm.timeouts.connect`,
    30 s unless configured, e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s).
    """
    import dask
    from distributed import Client, LocalCluster

    n_local = local_workers(address)
    if n_local is None and "://" not in address and not address.endswith(".json"):
        raise UserError(f"--dask {address}: not a scheduler address; {_HINT}")
    scratch = Path(tempfile.mkdtemp(prefix="rsseg-dask-")) if n_local else None
    cluster = client = None
    stack = ExitStack()
    try:
        if n_local:
            stack.enter_context(dask.config.set({"temporary-directory": str(scratch)}))  # lock files too
            with _sigint_ignored():
                cluster = LocalCluster(n_workers=n_local, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR,
                                       local_directory=str(scratch))
            client = Client(cluster)
        else:
            client = _connect(address, connect_timeout_s)
        _check_workers(client, address)
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        stack.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a LocalCluster starts its worker processes, which inherit that: Ctrl-C in a terminal
    reaches the whole process group, and only the client must act on it (it cancels and stops the workers)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals stay as they are
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _connect(address: str, timeout_s: float | None):
    from distributed import Client

    kwargs = {} if timeout_s is None else {"timeout": timeout_s}
    try:
        if address.endswith(".json"):
            if not Path(address).is_file():
                raise UserError(f"--dask {address}: scheduler file not found; {_HINT}")
            return Client(scheduler_file=address, **kwargs)
        return Client(address, **kwargs)
    except (OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UserError(f"--dask {address}: no Dask scheduler answers at {address} ({reason}); start one with "
                        f"'dask scheduler' on that machine, or check the host, the port (default 8786) and "
                        f"the firewall") from None


def _check_workers(client, address: str) -> None:
    """Wait for a worker; UserError when none comes or a worker cannot import the engine."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise UserError(f"--dask {address}: the scheduler has no workers after {WORKER_WAIT_S:.0f} s; start some "
                        f"with 'dask worker {address} --nthreads 1'") from None
    try:
        client.run(_engine_location)
    except Exception as exc:  # noqa: BLE001 - whatever the worker raised while unpickling or importing
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UserError(f"--dask {address}: a worker cannot import the rsseg engine ({type(exc).__name__}: "
                        f"{first}); install the same engine version into every worker's Python") from None


def worker_threads(client) -> int:
    """Threads over all workers of `client` (at least 1)."""
    return max(1, sum(client.nthreads().values()))
