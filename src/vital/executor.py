"""Where batch work runs: in this process (``local``, the default and the reference) or on Ray (``ray``).

A stage gives an executor a *worker factory* and the items to work on, and gets the results back in
batches, in whatever order they finish::

    with open_executor(config.executor) as executor:
        for positions, results in executor.map_batches(make_worker, items, batch_size=256, stage="encoding"):
            ...  # results[i] belongs to items[positions[i]]

``make_worker()`` builds the batch function -- loads a model, say -- once per worker: once in this
process for ``local``; once per actor for ``ray``, where it arrives pickled, so it should carry what it
needs to build the model (a name, a folder), not the weights.  Results come back to this process, which
alone writes outputs: workers never write the embedding cache or an output file, so there is never a
second writer.

``ray`` runs the batches with Ray Data: the items become a Dataset, ``map_batches`` runs the worker on an
actor pool (``ActorPoolStrategy``, an explicit ``batch_size``), one GPU per actor when the cluster has
GPUs and a fraction of a CPU otherwise, so that the actors never reserve every CPU (a pool that does
starves Ray Data's own tasks, and the job then waits for ever).  It connects to ``$RAY_ADDRESS`` when set
and otherwise starts a local Ray sized to this machine, which it shuts down again when the stage ends
(also on Ctrl-C).  An actor that dies is restarted and its batch retried (``max_restarts``,
``max_task_retries``); when no batch arrives for ``$VITAL_RAY_TIMEOUT`` seconds (default 600) the stage
stops with one error naming it and what to check -- never a silent hang.  Items and results arrive as
they were sent: strings (paths, texts) and arrays (vectors) travel as Arrow columns, anything else (a dict
per question, a list of answers) pickled, because Arrow would turn dicts into records of the union of their
keys.

Nothing here imports Ray until a Ray executor starts: ``import vital`` and ``vital --help`` stay light.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import math
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vital.config import setting
from vital.errors import InputError
from vital.progress import Progress, or_silent

EXECUTORS = ("local", "ray")
DEFAULT_TIMEOUT = 600.0
"""Seconds without a finished batch before a Ray stage gives up (``$VITAL_RAY_TIMEOUT`` overrides it)."""
ACTOR_RETRIES = 3
"""Restarts of a dead actor, and retries of the batch it was running, before the stage fails."""
LOCAL_OBJECT_STORE_MB = 512
"""Object store of a Ray this module starts: batches of paths, texts and vectors are small."""

Batch = tuple[list[int], Any]
"""``(positions, results)``: ``results[i]`` (a row of an array, or an element of a list) is the result of
``items[positions[i]]``."""
WorkerFactory = Callable[[], Callable[[list[Any]], Any]]
"""Builds the batch function (``items -> results``, one result per item, in order) where it runs."""


def executor_setting() -> Any:
    """The ``executor`` field of a stage's config: where its models run (it never changes the output)."""
    return setting(
        "local", "Where the models run: local (this process) or ray (the Ray cluster at $RAY_ADDRESS, else a "
        "local Ray sized to this machine; needs vital's ray extra).", choices=EXECUTORS, changes_output=False)


def torch_device(device: str) -> str:
    """``device``, with ``"auto"`` made the GPU when this process can see one, else the CPU: how a model
    rebuilt on a worker uses the GPU Ray gave its actor (Ray shows an actor only the GPUs it reserved)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ExecutorError(InputError):
    """The executor could not do the work (Ray missing or unreachable, no batch for too long, a failed
    worker): one line naming the stage and what to check, shown like any unusable input."""


class Executor(Protocol):
    name: str

    def map_batches(
        self, make_worker: WorkerFactory, items: Sequence[Any], *, batch_size: int, stage: str,
        progress: Progress | None = None,
    ) -> Iterator[Batch]:
        """The results of the worker over ``items`` in batches of at most ``batch_size``, as they finish.

        ``stage`` names the work in progress reports and errors.
        """
        ...


class LocalExecutor:
    """Every batch in this process, in order: the reference every other executor must agree with."""

    name = "local"

    def map_batches(
        self, make_worker: WorkerFactory, items: Sequence[Any], *, batch_size: int, stage: str,
        progress: Progress | None = None,
    ) -> Iterator[Batch]:
        if not items:
            return
        work = make_worker()
        with or_silent(progress).task(stage, total=len(items)) as task:
            for start in range(0, len(items), batch_size):
                batch = list(items[start : start + batch_size])
                yield list(range(start, start + len(batch))), work(batch)
                task.advance(len(batch))


@dataclass(frozen=True)
class ActorShape:
    """How many actors a Ray stage runs and what each one reserves."""

    actors: int
    cpus: float
    gpus: int


def actor_shape(cluster_cpus: float, cluster_gpus: float, actors: int | None = None,
                cpu_actors: int | None = None) -> ActorShape:
    """One actor per GPU (one GPU each) when the cluster has GPUs, else one per CPU, or ``cpu_actors`` (a
    stage whose workers each hold a large model caps them: answering with a 7B on CPUs); ``actors``
    overrides the count (at most one per GPU).  The actors reserve at most all CPUs but one -- half of a one-CPU
    machine -- so that Ray Data's own tasks can always run (torch still uses one thread per actor)."""
    gpus = int(cluster_gpus)
    count = actors or gpus or cpu_actors or max(1, int(cluster_cpus))
    if gpus:
        count = min(count, gpus)
    spare = cluster_cpus - min(1.0, cluster_cpus / 2)
    cpus = math.floor(min(1.0, spare / count) * 100) / 100
    if cpus <= 0:
        raise ExecutorError(f"{count} actors do not fit on a Ray cluster of {cluster_cpus:g} CPUs; use fewer")
    return ActorShape(count, cpus, 1 if gpus else 0)


def machine_cpus() -> int:
    """The CPUs this process may use (the affinity mask, which containers narrow; else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _ActorWorker:
    """What each Ray Data actor holds: the worker built once, applied to ``{"position", "item"}`` batches.

    Items arrive pickled when ``pickled_items`` (see :meth:`RayExecutor.map_batches`); results that are
    not an array leave pickled, in the ``pickled`` column instead of ``result``.
    """

    def __init__(self, make_worker: WorkerFactory, pickled_items: bool) -> None:
        self.work = make_worker()
        self.pickled_items = pickled_items

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        items = batch["item"].tolist()
        if self.pickled_items:
            items = [pickle.loads(item) for item in items]
        results = self.work(items)
        if isinstance(results, np.ndarray):
            return {"position": batch["position"], "result": results}
        return {"position": batch["position"],
                "pickled": np.array([pickle.dumps(result) for result in results], dtype=object)}


class RayExecutor:
    """Batches on an actor pool of Ray Data; a context manager (``with RayExecutor() as executor: ...``).

    ``address`` (default ``$RAY_ADDRESS``) is an existing cluster; without one, a local Ray with
    :func:`machine_cpus` CPUs is started and, on leaving the ``with``, shut down.  A Ray already running
    in this process (``ray.init()`` called before) is used as it is and left running.  ``actors`` fixes
    the pool's size (default: :func:`actor_shape`); ``timeout`` is the longest wait for a batch.
    """

    name = "ray"

    def __init__(
        self, *, address: str | None = None, actors: int | None = None, cpu_actors: int | None = None,
        timeout: float | None = None,
        object_store_mb: int = LOCAL_OBJECT_STORE_MB,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.actors = actors
        self.cpu_actors = cpu_actors
        self.timeout = timeout or float(os.environ.get("VITAL_RAY_TIMEOUT") or DEFAULT_TIMEOUT)
        self.object_store_mb = object_store_mb
        self._started = False

    def __enter__(self) -> RayExecutor:
        ray = _import_ray()
        if ray.is_initialized():
            return self
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(num_cpus=machine_cpus(), object_store_memory=self.object_store_mb * 2**20,
                         include_dashboard=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            raise ExecutorError(f"cannot start or reach {where}: {exc}") from None
        self._started = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started:
            _import_ray().shutdown()
            self._started = False

    def shape(self) -> ActorShape:
        ray = _import_ray()
        resources = ray.cluster_resources()
        return actor_shape(resources.get("CPU", 0.0), resources.get("GPU", 0.0), self.actors, self.cpu_actors)

    def map_batches(
        self, make_worker: WorkerFactory, items: Sequence[Any], *, batch_size: int, stage: str,
        progress: Progress | None = None,
    ) -> Iterator[Batch]:
        if not items:
            return
        ray = _import_ray()
        if not ray.is_initialized():
            raise ExecutorError(f"{stage}: the Ray executor is not started (use it in a 'with' block)")
        import ray.data

        shape = self.shape()
        plain = all(isinstance(item, str) for item in items)  # else pickled: Arrow would reshape dicts
        rows = [{"position": i, "item": item if plain else pickle.dumps(item)} for i, item in enumerate(items)]
        with _quiet_ray_data(self.timeout):
            dataset = ray.data.from_items(rows)
            with warnings.catch_warnings():
                # Ray >= 2.60 warns that max_restarts / max_task_retries move out of **ray_remote_args;
                # they have no other spelling yet, and without them a crashing actor restarts for ever.
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
                mapped = dataset.map_batches(
                    _ActorWorker,
                    fn_constructor_args=(make_worker, not plain),
                    batch_size=batch_size,
                    batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(min_size=1, max_size=shape.actors),
                    num_cpus=shape.cpus,
                    num_gpus=shape.gpus or None,
                    max_restarts=ACTOR_RETRIES,
                    max_task_retries=ACTOR_RETRIES,
                )
            done = 0
            with or_silent(progress).task(stage, total=len(items)) as task, _Watchdog(self.timeout) as watchdog:
                try:
                    for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
                        positions = batch["position"].tolist()
                        results = batch["result"] if "result" in batch else [
                            pickle.loads(result) for result in batch["pickled"]]
                        with watchdog.paused():  # the caller's time with a batch is not waiting for Ray
                            yield positions, results
                        done += len(positions)
                        task.advance(len(positions))
                except KeyboardInterrupt:
                    if watchdog.fired:
                        raise self._stalled(stage, shape, done, len(items)) from None
                    raise
                except ray.exceptions.RayError as exc:
                    if isinstance(exc, InputError):  # the worker's own error, e.g. an encoder that cannot load
                        raise
                    raise ExecutorError(f"{stage} failed on Ray ({done} of {len(items)} items done): "
                                        f"{_first_line(exc)}") from exc
                except Exception as exc:
                    if type(exc).__name__ == "ExecutionTimeoutError":  # Ray Data's own guard (see _Watchdog)
                        raise self._stalled(stage, shape, done, len(items)) from None
                    raise

    def _stalled(self, stage: str, shape: ActorShape, done: int, total: int) -> ExecutorError:
        ray = _import_ray()
        free, whole = ray.available_resources(), ray.cluster_resources()
        need = f"{shape.cpus:g} CPU" + (f" and {shape.gpus} GPU" if shape.gpus else "")
        return ExecutorError(
            f"{stage}: no batch came back from Ray for {self.timeout:.0f} s ({done} of {total} items done). "
            f"Each of up to {shape.actors} actors needs {need}; the cluster has {free.get('CPU', 0):g} of "
            f"{whole.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} of {whole.get('GPU', 0):g} GPUs free. "
            "Check 'ray status' and the worker logs (/tmp/ray/session_latest/logs); $VITAL_RAY_TIMEOUT "
            "sets the wait in seconds")


@contextlib.contextmanager
def open_executor(name: str, *, cpu_actors: int | None = None) -> Iterator[Executor]:
    """The executor called ``name`` (one of :data:`EXECUTORS`), started for the ``with`` block
    (``cpu_actors``: see :func:`actor_shape`)."""
    if name == "local":
        yield LocalExecutor()
    elif name == "ray":
        with RayExecutor(cpu_actors=cpu_actors) as executor:
            yield executor
    else:
        raise InputError(f"{name!r} is not one of {', '.join(EXECUTORS)}", field="executor")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray: pip install 'vital[ray]'") from None
    return ray


@contextlib.contextmanager
def _quiet_ray_data(timeout: float) -> Iterator[None]:
    """Ray Data without its progress bars and start-up lines (the stage reports progress), with the
    worker's own exception (an ``InputError`` stays one) and, where the installed Ray has one, its own
    no-progress limit at ``timeout``; the previous settings come back afterwards."""
    import ray.data

    context = ray.data.DataContext.get_current()
    wanted = {"enable_progress_bars": False, "print_on_execution_start": False,
              "raise_original_map_exception": True, "execution_no_progress_timeout_s": timeout}
    previous = {name: getattr(context, name) for name in wanted if hasattr(context, name)}
    # the execution's start-up lines, and the warning that its progress bars are off
    levels = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    before = {logger: logger.level for logger in loggers}
    for name in previous:
        setattr(context, name, wanted[name])
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(context, name, value)
        for logger, level in before.items():
            logger.setLevel(level)


class _Watchdog:
    """Interrupts the main thread, as a Ctrl-C would, when no batch has arrived for ``timeout`` s
    (``fired`` then says it was the watchdog).

    Ray Data waits for a batch in a loop in the caller's thread, and an interrupt is what ends that loop
    cleanly (Ray Data then stops its execution itself).  Off the main thread the watchdog does nothing, and
    Ray Data's own no-progress limit, where the installed Ray has one, does the same work.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.fired = False
        self._deadline = time.monotonic() + timeout
        self._paused = False
        self._lock = threading.Lock()
        self._done = threading.Event()

    def __enter__(self) -> _Watchdog:
        if threading.current_thread() is threading.main_thread():
            threading.Thread(target=self._watch, name="vital-ray-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._done.set()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._paused = True
        try:
            yield
        finally:
            self._paused = False
            self._deadline = time.monotonic() + self.timeout

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout / 4)):
            with self._lock:
                if not self._done.is_set() and not self._paused and time.monotonic() > self._deadline:
                    self.fired = True
                    _thread.interrupt_main()
                    return


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
