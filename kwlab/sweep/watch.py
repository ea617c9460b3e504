"""Watching the cluster while a sweep runs, from the driver: nodes that die (`LostNodes`), a head that stops answering
(`HeadWatch`: then the sweep ends with its counts and tables instead of being killed by Ray), trials that run past
their timeout (`overdue`), and errors about one trial that must fail that trial, not the sweep
(`contain_trial_errors`)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_CHECK_S = 2.0  # how often the cluster's nodes are looked at for lost ones
HEAD_CHECK_S = 2.0  # how often the head (GCS) is asked whether it answers
HEAD_TIMEOUT_S = 3.0  # an answer that takes longer is none
HEAD_MISSES = 2  # the head is lost after this many unanswered checks in a row (Ray kills the driver after 60 s)


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


class HeadWatch:
    """A daemon thread asking the cluster's head (its GCS) every HEAD_CHECK_S whether it answers; after HEAD_MISSES
    unanswered checks in a row it calls `lost()` once (which ends the sweep: Ray's own calls block until Ray kills
    the driver, 60 s after the head went)."""

    def __init__(self, lost: Callable[[], None]) -> None:
        self.lost, self.stop = lost, threading.Event()
        self.thread = threading.Thread(target=self._watch, name="kwlab-head-watch", daemon=True)

    def _watch(self) -> None:
        import ray._private.worker

        misses = 0
        while not self.stop.wait(HEAD_CHECK_S):
            try:
                # NOTE: Ray's public calls (ray.nodes) block without raising when the head is gone; its GCS client
                # takes a timeout
                ray._private.worker.global_worker.gcs_client.get_all_node_info(timeout=HEAD_TIMEOUT_S)
                misses = 0
            except Exception:  # an RpcError: the head does not answer
                misses += 1
                if misses >= HEAD_MISSES:
                    self.lost()
                    return

    def start(self) -> None:
        """Begin watching."""
        self.thread.start()

    def close(self) -> None:
        """Stop watching (the sweep's Ray is shut down next)."""
        self.stop.set()


def overdue(started: dict[Any, float], timeout: float | None) -> list[Any]:
    """The Tune trials (keys of `started`, their start times) running longer than `timeout` seconds."""
    if timeout is None:
        return []
    now = time.monotonic()
    return [trial for trial, since in started.items() if now - since > timeout]


def stop_trial(trial: Any) -> None:
    """Kill a Tune trial's actor (its worker process): Tune then records the trial's error (or retries it)."""
    import ray

    actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
    if actor is not None:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(actor, no_restart=True)


def contain_trial_errors() -> None:
    """Make an error about one trial's task that Ray Tune does not expect (Ray's memory monitor killing the worker:
    an OutOfMemoryError) fail that trial, as a dead worker does, instead of ending the whole sweep."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import RayActorError, RayTaskError

    original = RayActorManager._actor_task_failed
    if getattr(original, "kwlab", False):
        return

    def task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
        # NOTE: Ray Tune 2.60 raises "Caught unexpected exception" out of Tuner.fit for any error of a trial's task
        # that is neither a RayActorError nor a RayTaskError, and the memory monitor's kill is neither
        if not isinstance(exception, RayActorError | RayTaskError):
            exception = RayActorError(error_msg=f"{type(exception).__name__}: {exception}")
        original(self, tracked_actor_task=tracked_actor_task, exception=exception)

    task_failed.kwlab = True  # type: ignore[attr-defined]
    RayActorManager._actor_task_failed = task_failed


MEMORY = re.compile(r"killed due to the node running low on memory.*?was ([\d.]+\s*\w*B) used / ([\d.]+\s*\w*B) limit "
                    r"\(([\d.]+)\)", re.S)


def trial_error_cause(error_file: str | None) -> str | None:
    """A one-line cause of a trial's failure outside kwlab's code, from the error file Tune writes for it: the memory
    monitor's kill, a worker process that died, or its last line; None when there is no file."""
    try:
        text = Path(error_file).read_text(errors="replace") if error_file else ""
    except OSError:
        return None
    if not text.strip():
        return None
    if match := MEMORY.search(text):
        used, total, share = match.groups()
        return f"killed by Ray's memory monitor: node memory at {float(share):.0%} ({used} / {total})"
    if "killed due to the node running low on memory" in text:
        return "killed by Ray's memory monitor: the node ran low on memory"
    if match := re.search(r"Worker exit detail: ([^\n]+)", text):
        return f"its worker process died ({match[1].strip().rstrip('.')}: killed, e.g. by SIGKILL or the system's OOM killer)"
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    return f"Ray: {last}"[:300]
