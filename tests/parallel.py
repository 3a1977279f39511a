"""Independent checks side by side, one per core: the corpus loops (a tshark run or a
ladder drawn per capture) were a minute of the suite, one capture after another.

`run_all` runs commands at once in threads (each waits on its child process);
`map_in_processes` calls a module-level function on each item in worker processes
(spawned, so nothing of this process but its sys.path is shared)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

WORKERS = max(2, os.cpu_count() or 1)


def run_all(commands: Iterable[Sequence[str]], *, timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Each command's CompletedProcess (text output captured), in the commands' order."""
    def run(argv):
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(run, commands))


def map_in_processes(function: Callable, items: Iterable) -> list:
    """`function(item)` for each item, in the items' order; its exceptions reach the caller."""
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(function, items))
