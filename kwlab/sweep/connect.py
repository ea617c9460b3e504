"""Reaching the Ray cluster a sweep runs on: `--address` checked before anything else (one line for a malformed
one), Ray's connection settings made to fail fast (a cluster that does not answer is one line in seconds, not Ray's
14 minutes of retries), and the authentication token sent when the cluster wants one.

Ray reads its connection settings and token mode from the environment when it is imported, so `prepare` runs
before the runner imports Ray (Ray's defaults in 2.60 measured here: 20 attempts of about 41 s each on a port where
nothing answers; an explicit address never sends the token that `ray start --head` reads from ~/.ray/auth_token).
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
from pathlib import Path

from kwlab.errors import KWLabError

# NOTE: Ray's own settings (C++ RayConfig and ray_constants, read at `import ray`): wait 2 s for the GCS to answer a
# connection, 5 s in all from Python, over 2 attempts; kwlab's defaults, a user's environment wins
FAST = {"RAY_gcs_rpc_server_connect_timeout_s": "2", "RAY_py_gcs_connect_timeout_s": "5",
        "RAY_gcs_server_port_wait_time_s": "2"}
ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")
PROBE_S = 3.0  # a TCP connection to the head's port that takes longer counts as unanswered
# under an address-space limit (ulimit -v): a local Ray's object store takes at most this fraction of it, Ray maps
# about this much besides it into a process (1.1 GB measured with Ray 2.60), and a store smaller than this is refused
STORE_SHARE, RAY_MAPS, MIN_STORE = 4, 3 * 2**29, 100 * 2**20


def token_source() -> str | None:
    """Where Ray would find an authentication token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), or
    None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
        if path and Path(path).is_file() and Path(path).read_text().strip():
            return path
    return None


def check_address(address: str) -> tuple[str, int]:
    """(host, port) of `--address HOST:PORT`; anything else is one line naming what was expected."""
    match = ADDRESS.fullmatch(address.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise KWLabError(f"--address {address!r}: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379, "
                         "the address `ray start --head` prints)")
    return match["host"].strip("[]"), int(match["port"])


# Asks the cluster's head (in a process of its own: Ray fixes its token mode when imported) whether it wants a token
PROBE = """
import sys
from ray._raylet import GcsClient
from ray.exceptions import AuthenticationError
try:
    GcsClient(address=sys.argv[1])
except AuthenticationError:
    print("token")
except Exception:
    print("unknown")
else:
    print("open")
"""


def wants_token(address: str) -> bool:
    """Whether the cluster at `address` has Ray's token authentication on (False when it cannot be asked)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **FAST}
    try:
        answer = subprocess.run([sys.executable, "-c", PROBE, address], capture_output=True, text=True, env=env,
                                timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return answer == "token"


def prepare(address: str | None) -> None:
    """Set Ray's connection settings before it is imported: fail fast, and, for an explicit address whose cluster
    has token authentication on, token mode (Ray sends no token to an explicit address otherwise; and a client in
    token mode cannot create actors on a cluster without it, so the cluster is asked first)."""
    for key, value in FAST.items():
        os.environ.setdefault(key, value)
    if address is not None and "RAY_AUTH_MODE" not in os.environ:
        probe(address)
        if wants_token(address):
            os.environ["RAY_AUTH_MODE"] = "token"


def probe(address: str) -> None:
    """Refuse, in one line, an address where nothing accepts a connection (before Ray's retries)."""
    host, port = check_address(address)
    try:
        socket.create_connection((host, port), timeout=PROBE_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise KWLabError(f"--address {address}: no Ray cluster answers there ({reason}); start its head with "
                         f"`ray start --head --port {port}`, or leave --address out for a local instance") from None


def limited_object_store() -> int | None:
    """The object store (bytes) of a local Ray under this process's address-space limit (`ulimit -v`): what the
    limit leaves beside this process's mappings and Ray's own, at most a STORE_SHARE-th of it; None without a limit
    (Ray's default, 30% of the memory, then applies). A limit that leaves too little is a one-line KWLabError.

    Ray maps its whole object store into every process it starts, the driver included; where the limit leaves less,
    the mapping fails and Ray aborts the process from C++, with no Python error to catch and the runner's lock left
    behind. A sweep's trials pass little through the store (their metrics; checkpoints go to storage).
    """
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY:
        return None
    mapped = mapped_bytes()
    room = limit - mapped - RAY_MAPS
    if room < MIN_STORE:
        raise KWLabError(f"the address-space limit (ulimit -v) of {limit / 2**30:.1f} GiB leaves no room for Ray's "
                         f"object store: this process maps {mapped / 2**30:.1f} GiB and Ray about "
                         f"{RAY_MAPS / 2**30:.1f} GiB more; raise the limit (ulimit -v unlimited)")
    return min(room, limit // STORE_SHARE)


def mapped_bytes() -> int:
    """This process's virtual memory (VmSize in /proc/self/status; 0 where there is none)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            line = next((line for line in status if line.startswith("VmSize:")), "VmSize: 0 kB")
    except OSError:
        return 0
    return int(line.split()[1]) * 1024


def connect(address: str | None) -> None:
    """ray.init for a sweep: a local instance, or the cluster at `address`; a cluster that does not answer, or
    that wants a token kwlab does not have (or rejects the one it has), is one line saying which."""
    import ray

    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
               "ignore_reinit_error": True}
    if address is None and (store := limited_object_store()) is not None:
        options["object_store_memory"] = store
    try:
        ray.init(address=address or "local", **options)
    except ray.exceptions.AuthenticationError:
        raise KWLabError(f"--address {address}: the cluster wants an authentication token and kwlab found none; "
                         "put the head's token (`ray get-auth-token` there) in ~/.ray/auth_token or RAY_AUTH_TOKEN")
    except ConnectionError as error:
        cause = str(error.__cause__ or error)
        if "InvalidAuthToken" in cause or "AuthenticationError" in cause:
            source = token_source()
            raise KWLabError(f"--address {address}: the cluster wants an authentication token and "
                             + (f"rejected the one in {source}" if source else "kwlab found none") + "; put the "
                             "head's token (`ray get-auth-token` there) in ~/.ray/auth_token or RAY_AUTH_TOKEN") from None
        last = next((line.strip() for line in reversed(cause.splitlines()) if line.strip()), type(error).__name__)
        raise KWLabError(f"--address {address}: a server answers there but no Ray cluster ({last[:200]}); check the "
                         "address `ray start --head` printed") from None
