"""Ray's own output while a sweep runs, kept out of the user's terminal: the error messages the cluster pushes to the
driver (a lost node's raylet log dump, "[state-dump]" lines), its unhandled-error reports, and anything its C++ core
writes to the process's stderr (stack traces) go to a log file of the store's `logs/` folder; kwlab says what
happened in one line of its own (kwlab.sweep.watch)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

@contextlib.contextmanager
def ray_output_to(log: Path) -> Iterator[None]:
    """Send the process's stderr (file descriptor 2, where Ray's C++ core and its loggers write) and the driver's
    printed cluster messages to `log` while the block runs; Python's `sys.stderr` keeps the terminal for kwlab's own
    lines."""
    import ray._private.worker as ray_worker

    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    terminal = os.dup(2)
    sink = open(log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed below, after fd 2 is restored)
    os.dup2(sink.fileno(), 2)
    old_stderr, old_print = sys.stderr, ray_worker.print_to_stdstream
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, encoding="utf-8", errors="replace")

    def to_log(data: dict[str, Any], ignore_prefix: bool) -> None:
        # NOTE: Ray prints what the cluster pushes to the driver (a dead raylet's last 20 log lines, job errors)
        # with this function on stdout; kwlab keeps it in the log and says it in one line of its own
        for line in data.get("lines", []):
            sink.write(f"({data.get('pid')}) {line}\n")

    ray_worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = old_print
        sys.stderr.flush()
        os.dup2(terminal, 2)
        os.close(terminal)
        sys.stderr.close()
        sys.stderr = old_stderr
        sink.close()
