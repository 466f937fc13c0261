"""The Dask executor: the engine's heavy loops run on a Dask cluster when one machine is not enough.

Imported only when a scheduler is asked for (:func:`.tiling.open_executor`), so the plugin and the
engine load and run in-process without Dask installed. A scheduler is one of:

- ``local:N``: a ``LocalCluster`` of N worker processes with one thread each on this machine,
  started here and closed at the end (``local``: one worker per CPU core);
- ``tcp://host:port`` (or ``tls://``): an existing cluster, a ``dask scheduler`` with ``dask worker``
  processes on other machines. An address that does not answer within :data:`CONNECT_TIMEOUT`
  seconds is refused at once, by name.

What runs where: an engine loop (the tiler's batches of tiles, fusion's windows) hands
:meth:`DaskExecutor.map_in_order` one callable that knows how to read its inputs by path and
compute one item, and the list of items. The callable (with its model) is shipped to every worker
once (scattered, broadcast); each item becomes one task that calls it on a worker. Results come
back in the order of the items, so the one writer in this process blends and writes exactly as
the in-process run does. At most ``ahead`` + 2 per worker thread tasks are in flight or waiting
to be taken, so memory here stays bounded. A task that fails is retried (:data:`RETRIES`), and
the scheduler re-runs the tasks of a worker that dies; cancelling releases every pending task and
the atomic writer leaves no output.

Workers import this plugin's package by name: a local cluster's workers import it from this
plugin's folder first (a Dask preload, as ``scripts/cloudfree_import.py`` does for a checkout under
any folder name); a scheduler and workers on other machines need the folder that holds the plugin
folder ``cloudfree`` on their ``PYTHONPATH`` (README, *Scale out*; the scheduler unpickles each
task's function). Workers read the inputs by path, so the inputs must be on storage every worker
reaches at the same path (a network share, ``/vsis3/``...).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import uuid
from collections import deque
from concurrent.futures import CancelledError
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .errors import ClusterError, InputError
from .runtime import CancelCheck, Progress, check_cancelled, report, require_packages, steady_memory

require_packages(("dask", "distributed"))

from distributed import Client, LocalCluster  # noqa: E402  (after the dependency check)
from distributed.scheduler import KilledWorker  # noqa: E402

log = logging.getLogger("cloudfree")

CONNECT_TIMEOUT = 5   # seconds to reach a scheduler (and for it to have a worker) before giving up
RETRIES = 2           # re-runs of a task that raised, besides the scheduler's re-runs after a worker died
POLL_SECONDS = 0.2    # how often a wait checks cancel and reports progress
PACKAGE = __name__.split(".")[0]
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
FORMS = "empty (here), local:N (N worker processes on this machine) or tcp://host:port (a running cluster)"


def parse_scheduler(spec: str) -> tuple:
    """``("local", workers)`` or ``("address", address)``; InputError naming the setting otherwise."""
    text = (spec or "").strip()
    if text == "local":
        return "local", max(1, os.cpu_count() or 1)
    if text.startswith("local:"):
        count = text.split(":", 1)[1].strip()
        if not count.isdigit() or not 1 <= int(count) <= 512:
            raise InputError(f"Scheduler '{spec}': local:N needs a number of worker processes N from 1 to 512.")
        return "local", int(count)
    if "://" in text and text.split("://", 1)[1]:
        return "address", text
    raise InputError(f"Scheduler '{spec}' is not understood: use {FORMS}.")


@contextmanager
def open_executor(spec: str) -> Iterator["DaskExecutor"]:
    """The executor for a scheduler ``spec`` (see the module docstring); a local cluster is closed at the end."""
    kind, value = parse_scheduler(spec)
    with (_local_cluster(value) if kind == "local" else _connect(value)) as client:
        workers = client.nthreads()
        where = "LocalCluster" if kind == "local" else f"cluster at {value}"
        description = f"Dask {where}, {len(workers)} worker process(es), {sum(workers.values())} thread(s)"
        log.info("Executor: %s", description)
        yield DaskExecutor(client, description)


@contextmanager
def _local_cluster(workers: int) -> Iterator[Client]:
    _worker_python()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR, preload=[_package_setup()])
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


@contextmanager
def _connect(address: str) -> Iterator[Client]:
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"The Dask scheduler at {address} does not answer ({exc}). Start one there with "
                           f"`dask scheduler` and workers with `dask worker {address}`, or leave the scheduler "
                           "empty to run here.") from exc
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except TimeoutError as exc:
            raise ClusterError(f"The Dask scheduler at {address} has no workers: start some with "
                               f"`dask worker {address}`.") from exc
        yield client
    finally:
        client.close()


def _package_setup() -> str:
    """The script a local worker runs first (a Dask preload given as its text): this plugin's folder imported
    under the name this process knows it by, as ``scripts/cloudfree_import.py`` does for a checkout."""
    init, root = str(PACKAGE_ROOT / "__init__.py"), str(PACKAGE_ROOT)
    return "\n".join([
        "import importlib.util, sys",
        f"if {PACKAGE!r} not in sys.modules:",
        f"    spec = importlib.util.spec_from_file_location({PACKAGE!r}, {init!r},",
        f"                                                  submodule_search_locations=[{root!r}])",
        "    module = importlib.util.module_from_spec(spec)",
        f"    sys.modules[{PACKAGE!r}] = module",
        "    spec.loader.exec_module(module)", ""])


def _worker_python() -> None:
    """Worker processes are new Python interpreters, started from ``sys.executable``. Inside QGIS (and
    ``qgis_process``) that is QGIS itself, or whatever ``python3`` the PATH gave the embedded interpreter,
    so then multiprocessing is pointed at the interpreter of this process's own installation."""
    executable, prefix = os.path.abspath(sys.executable or ""), os.path.abspath(sys.prefix)
    if os.path.basename(executable).lower().startswith("python") and executable.startswith(prefix + os.sep):
        return  # a plain interpreter, a virtual environment's included
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.join(sys.exec_prefix, "bin", f"python{version}"),
                      os.path.join(sys.exec_prefix, "bin", "python3"), os.path.join(sys.exec_prefix, "python.exe")):
        if os.path.isfile(candidate):
            multiprocessing.set_executable(candidate)
            return


def _call(shared: Callable, item):
    """One task, on a worker: the shipped callable on one item (in a worker whose memory stays steady)."""
    _steady_worker_memory()
    return shared(item)


_WORKER_MEMORY: dict = {"held": None, "lock": threading.Lock()}


def _steady_worker_memory() -> None:
    """From a worker's first task on, glibc keeps freed memory in the process (:func:`.runtime.steady_memory`,
    which the in-process tiler holds for a whole run). Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``,
    under which every batch page-faults the network's memory in again: measured, each task took 4 times as long
    as in-process, and still twice as long when the setting was held per task only."""
    with _WORKER_MEMORY["lock"]:
        if _WORKER_MEMORY["held"] is None:
            held = ExitStack()
            held.enter_context(steady_memory())
            _WORKER_MEMORY["held"] = held


def _finished(taken: int, pending: deque) -> int:
    """Tasks finished: those already taken and those pending whose result is ready."""
    return taken + sum(f.done() for f in pending)


class DaskExecutor:
    """Runs an engine loop on a Dask cluster: one callable shipped once, one task per item, results in order."""

    def __init__(self, client: Client, description: str):
        self.client, self.description = client, description

    @property
    def threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def map_in_order(self, shared: Callable, items: Sequence, *, ahead: int = 0, progress: Progress = None,
                     cancelled: CancelCheck = None) -> Iterator:
        """``shared(item)`` for every item, computed on the workers, yielded in the order of ``items``.

        ``ahead``: how many tasks the caller takes before it can use any (a row of tiles), added to
        the 2 per worker thread kept in flight. Progress is the share of finished tasks; ``cancelled``
        is checked while waiting. Closing the generator early cancels what is still pending.
        """
        items = list(items)
        if not items:
            return
        shipped = self._ship(shared)
        limit, run = ahead + 2 * self.threads, uuid.uuid4().hex[:8]
        pending: deque = deque()
        submitted = 0
        try:
            for index in range(len(items)):
                while submitted < len(items) and len(pending) < limit:
                    pending.append(self.client.submit(_call, shipped, items[submitted], retries=RETRIES,
                                                      key=f"cloudfree-{run}-{submitted}"))
                    submitted += 1
                result = self._result(pending, index, len(items), progress, cancelled)
                pending.popleft()
                report(progress, _finished(index + 1, pending) / len(items))
                yield result
        finally:
            self.client.cancel(list(pending) + [shipped])

    def _ship(self, shared: Callable):
        """``shared`` copied to every worker once (a future the tasks take as their first argument)."""
        try:
            return self.client.scatter(shared, broadcast=True, hash=False)
        except Exception as exc:  # the workers' error arrives as a plain Exception carrying its text
            if f"No module named '{PACKAGE}'" not in str(exc):
                raise
            raise ClusterError(f"The Dask workers cannot import CloudFree ({exc}): start them with the folder that "
                               f"holds the plugin folder '{PACKAGE}' on their PYTHONPATH (README, Scale out).") \
                from exc

    def _result(self, pending: deque, index: int, total: int, progress: Progress, cancelled: CancelCheck):
        """The result of the oldest pending task, checking cancel and reporting finished tasks while it runs."""
        future, finished = pending[0], threading.Event()
        future.add_done_callback(lambda _: finished.set())
        while not finished.wait(POLL_SECONDS):
            check_cancelled(cancelled)
            report(progress, _finished(index, pending) / total)
        check_cancelled(cancelled)
        try:
            return future.result()  # fetched again from elsewhere if its worker died meanwhile
        except (KilledWorker, CancelledError) as exc:
            raise ClusterError(f"The Dask cluster lost task {index + 1} of {total} ({type(exc).__name__}: {exc}); "
                               "its workers died or the scheduler went away. Nothing was written.") from exc
        except RuntimeError as exc:  # the scheduler unpickles each task's function: it needs the plugin too
            if "deserialization of the task graph" not in str(exc):
                raise
            raise ClusterError(f"The Dask scheduler cannot read CloudFree's tasks: start it, like the workers, with "
                               f"the folder that holds the plugin folder '{PACKAGE}' on its PYTHONPATH (README, Scale "
                               "out).") from exc
