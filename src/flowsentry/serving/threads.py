"""Native thread pools per worker process: a few threads each, and scale with workers.

Why: OpenMP (scikit-learn's gradient boosting, torch) and BLAS start one thread per core
in every process, and an idle OpenMP thread spins for a while before it sleeps. Two
such processes on one host (two BentoML workers, two replicas, or a neighbour's job)
each run a team as wide as the machine and wait on each other at every barrier (a
gradient-boosting prediction has one per tree): one job scored alone took 3.55 s
beside a process looping gradient-boosting predictions, 40-50 ms with one thread
(a user's Bento); on 2 cores 3.66 s vs 96 ms p50 (bench/results/serve_neighbour.json).
BentoML scales by worker processes, so each worker keeps few native threads.

`limit_native_threads` is called where a worker starts, before any model is loaded:
it sets OMP/MKL/OPENBLAS_NUM_THREADS (read by each runtime when it is loaded, and
then the default of every thread), limits the pools already loaded (threadpoolctl,
kept for the life of the process) and torch's. An OpenMP runtime loaded before that
call takes a limit per thread only, so `limit_this_thread` repeats it once in each
thread that serves requests.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from flowsentry.errors import ConfigError

ENV_OVERRIDE = "FLOWSENTRY_THREADS_PER_WORKER"
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
UNSET = ("none", "null")

_state: dict[str, Any] = {"limit": None, "openmp": None}
_local = threading.local()


def threads_per_worker(configured: int | None) -> int | None:
    """The limit to apply: FLOWSENTRY_THREADS_PER_WORKER when set (a number >= 1, or
    `none`: the libraries' defaults), else `configured` (serve.threads_per_worker)."""
    raw = os.environ.get(ENV_OVERRIDE, "").strip()
    if not raw:
        return configured
    if raw.lower() in UNSET:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{ENV_OVERRIDE}: '{raw}' is not a number >= 1 (or 'none')")
    return int(raw)


def limit_native_threads(n: int | None) -> int | None:
    """At most `n` native threads per pool in this process, for its whole life (see the
    module docstring for why); None leaves the libraries' defaults. Returns `n`."""
    _state["limit"] = n
    if n is None:
        return None
    from threadpoolctl import ThreadpoolController

    for name in THREAD_ENV_VARS:  # runtimes loaded from now on start with n
        os.environ[name] = str(n)
    controller = ThreadpoolController()
    controller.limit(limits=n)  # not a context: kept. BLAS: process-wide; OpenMP: this thread
    openmp = controller.select(user_api="openmp")
    _state["openmp"] = openmp if openmp.lib_controllers else None
    if "torch" in sys.modules:  # its intra-op pool; a later import reads OMP_NUM_THREADS
        import torch

        torch.set_num_threads(n)
    _local.done = True
    return n


def limit_this_thread() -> None:
    """Apply the limit to an OpenMP runtime that was loaded before `limit_native_threads`
    in the calling thread (once per thread; free when there is none: the service's case)."""
    openmp = _state["openmp"]
    if openmp is not None and not getattr(_local, "done", False):
        openmp.limit(limits=_state["limit"])
        _local.done = True


def native_threads() -> dict[str, Any]:
    """What this thread's native pools would use now, for /metadata: the limit and
    per library (threadpoolctl) its API, runtime and threads."""
    from threadpoolctl import threadpool_info

    pools = [
        {
            "user_api": info["user_api"],
            "internal_api": info["internal_api"],
            "library": os.path.basename(info["filepath"]),
            "num_threads": info["num_threads"],
        }
        for info in threadpool_info()
    ]
    torch = sys.modules.get("torch")
    if torch is not None:
        pools.append(
            {
                "user_api": "torch",
                "internal_api": "torch",
                "library": "torch",
                "num_threads": torch.get_num_threads(),
            }
        )
    return {"threads_per_worker": _state["limit"], "native_threads": pools}
