"""Clusters on this machine for the tests: an S3 API served by moto on loopback, and a multi-node Ray cluster built
with Ray's own `ray.cluster_utils.Cluster` (every node a raylet and object store of its own)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "runs"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "kwlab", "AWS_SECRET_ACCESS_KEY": "kwlab", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


@dataclass(frozen=True)
class S3:
    """An S3 API on 127.0.0.1 with one bucket: `uri(prefix)` is a results location kwlab takes."""

    port: int

    def uri(self, prefix: str) -> str:
        """s3://runs/<prefix> with the query options pyarrow needs for a plain-HTTP endpoint."""
        return f"s3://{BUCKET}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"


def serve_s3() -> Iterator[S3]:
    """moto's S3 server on a free loopback port with the bucket made, and the credentials in the environment (which
    kwlab, its Ray workers and the cluster's nodes inherit)."""
    moto_server = pytest.importorskip("moto.server", reason="moto absent: pip install 'moto[server]'")
    boto3 = pytest.importorskip("boto3")
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_port
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket=BUCKET)
    try:
        yield S3(port)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def epochs_of(metrics: str | None) -> list[int]:
    """The epoch numbers of a metrics.jsonl text, in order."""
    return [json.loads(line)["epoch"] for line in (metrics or "").splitlines() if line.strip()]


def wait_for(condition, timeout: float = 300, what: str = "the condition") -> None:
    """Poll `condition()` until it is true, or fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


def no_local_store_files(folder: Path) -> list[str]:
    """The files under `folder` (e.g. the working folder of a sweep on a URI store): what of the store landed there."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def descendants(root: int) -> set[int]:
    """The processes under `root`: its children, theirs and so on (read from /proc)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(proc.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def pids_of(name: str, argument: str, under: int | None = None) -> list[int]:
    """The processes whose command line runs `name` with `argument` (read from /proc), and, given `under`, only
    those under that process: this test's own processes, never all processes of a name (a user's sweep on this
    machine runs trials of the same name)."""
    found = []
    mine = descendants(under) if under is not None else None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or (mine is not None and int(proc.name) not in mine):
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and name.encode() in argv[0] and any(argument.encode() in a for a in argv):
            found.append(int(proc.name))
    return found


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_head(port: int, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`ray start --head --block --port PORT --num-cpus=2 [options]` as a user runs it, in the environment `env`
    (default: this process's), in a process group of its own; stopped with `stop_head`, never with `ray stop` (which
    stops every Ray on the machine: the session's head, a user's sweeps)."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    head = subprocess.Popen([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                             *options, "--block"], env=dict(os.environ) if env is None else env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: bool(pids_of("gcs_server", f"--gcs_server_port={port}")), 60, "the head's GCS")
    time.sleep(2)
    return head


def stop_head(head: subprocess.Popen) -> None:
    """Stop a head started by `start_head`: its process group, by id."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
