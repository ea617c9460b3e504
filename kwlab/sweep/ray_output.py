"""Ray's own output while a sweep runs, kept out of the user's terminal: the error messages the cluster pushes to the
driver (a lost node's raylet log dump, "[state-dump]" lines), its unhandled-error reports, and anything its C++ core
writes to the process's stderr (stack traces) go to a log file of the store's `logs/` folder; kwlab says what
happened in one line of its own (`LostNodes`)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

NODE_CHECK_S = 2.0  # how often the cluster's nodes are looked at for lost ones


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


class LostNodes:
    """Says one line per node of the cluster that dies while the sweep runs (`check`, called from the sweep's
    event loop), naming it and what happens to its trials."""

    def __init__(self, say: Callable[[str], None]) -> None:
        import ray

        self.say = say
        self.alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        self.checked = time.monotonic()

    def check(self, force: bool = False) -> None:
        """Look at the cluster's nodes (at most every NODE_CHECK_S unless `force`) and say which were lost since the
        last look."""
        import ray

        if not force and time.monotonic() - self.checked < NODE_CHECK_S:
            return
        self.checked = time.monotonic()
        with contextlib.suppress(Exception):  # the cluster out of reach for a moment: next time
            nodes = {n["NodeID"]: n for n in ray.nodes()}
            for node_id in [i for i in self.alive if not nodes.get(i, {}).get("Alive")]:
                node = self.alive.pop(node_id)
                resources = ", ".join(f"{v:g} {k}" for k, v in sorted(node.get("Resources", {}).items())
                                      if k in ("CPU", "GPU"))
                self.say(f"[red]lost node[/red]  {node.get('NodeManagerAddress')} ({node_id[:8]}, {resources}): its "
                         "trials resume on the other nodes from their last finished epoch")
            self.alive |= {i: n for i, n in nodes.items() if n.get("Alive") and i not in self.alive}
