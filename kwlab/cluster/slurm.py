"""`kwlab slurm SPEC`: run a sweep as one Slurm batch job that starts Ray across its nodes and resumes when requeued.

The batch script, written into the results store (slurm/sweep.sh), starts a Ray head on the job's first node (where
Slurm runs the script) and a Ray node on every other one, runs `kwlab sweep SPEC --address HEAD` on the first node
and stops Ray at the end. SIGTERM to the script (120 s before the time limit, or a requeue) goes on to `kwlab sweep`,
which keeps what finished and exits 143; a requeued job runs the same script again, and the sweep resumes its store.

Exit codes: 0 when the job was submitted (or --dry-run printed its script), 1 when the store cannot be written or
sbatch refused the job, 2 for bad input (the spec, the options, no sbatch on this machine).
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kwlab import store
from kwlab.errors import KWLabError, WriteError
from kwlab.files import write_text
from kwlab.sweep.capacity import check_fits
from kwlab.sweep.command import add_sweep_arguments, check_max_concurrent, plan_sweep, store_folder
from kwlab.sweep.spec import Resources

WARNING_S = 120  # SIGTERM reaches the script this long before the time limit: the sweep stops cleanly in it
NODES_WAIT_S = 300  # how long the script waits for every node's Ray to join before it gives up
# Slurm's time limits: minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]
SLURM_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab slurm`: the job's allocation, then those passed on to `kwlab sweep`."""
    parser.add_argument("--nodes", type=int, default=1, help="nodes of the job, one Ray node each (default 1)")
    parser.add_argument("--gpus-per-node", type=int, metavar="G",
                        help="GPUs on each node (default: what one trial asks for, spread over the nodes)")
    parser.add_argument("--cpus-per-node", type=int, metavar="C",
                        help="CPUs on each node (default: what one trial asks for, spread over the nodes)")
    parser.add_argument("--time", metavar="T", help="the job's time limit, in Slurm's format (e.g. 2:00:00, 1-12); "
                                                    "the sweep is told to stop 120 s before it")
    parser.add_argument("--partition", metavar="P", help="Slurm partition (default: the cluster's)")
    parser.add_argument("--account", metavar="A", help="Slurm account to charge (default: yours)")
    parser.add_argument("--dry-run", action="store_true", help="print the batch script; submit nothing")
    add_sweep_arguments(parser)


def time_limit_seconds(text: str) -> int | None:
    """The seconds of a Slurm time limit ('90' minutes, '1:30:00', '2-12'); None for no limit (0, UNLIMITED)."""
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    match = SLURM_TIME.fullmatch(text)
    if match is None:
        raise KWLabError(f"--time: {text!r} is not a Slurm time limit (minutes, minutes:seconds, "
                         "hours:minutes:seconds or days-hours[:minutes[:seconds]])")
    days, first, second, third = match.groups()
    if days is not None:
        hours, minutes, seconds = first, second or 0, third or 0
    elif third is not None:
        hours, minutes, seconds = first, second, third
    else:
        hours, minutes, seconds = 0, first, second or 0
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds) or None


@dataclass(frozen=True)
class Allocation:
    """What the job asks Slurm for: nodes and, on each, CPUs and GPUs (one Ray node per Slurm node); a time limit,
    partition and account where given (the cluster's defaults otherwise)."""

    nodes: int
    cpus_per_node: int
    gpus_per_node: int
    time: str | None = None
    partition: str | None = None
    account: str | None = None

    def __post_init__(self) -> None:
        for name in ("nodes", "cpus_per_node"):
            if getattr(self, name) < 1:
                raise KWLabError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise KWLabError(f"--gpus-per-node: expected an integer >= 0, got {self.gpus_per_node}")
        seconds = time_limit_seconds(self.time) if self.time is not None else None
        if seconds is not None and seconds <= WARNING_S:
            raise KWLabError(f"--time {self.time}: the sweep is told to stop {WARNING_S} s before the limit; give "
                             "the job longer than that")

    def check_trial_fits(self, resources: Resources) -> None:
        """Refuse, before anything is submitted, an allocation that cannot place one trial of the sweep."""
        node = {"CPU": self.cpus_per_node, "GPU": self.gpus_per_node}
        try:
            check_fits(resources, [node] * self.nodes)
        except KWLabError as error:
            raise KWLabError(f"--nodes {self.nodes} --cpus-per-node {self.cpus_per_node} --gpus-per-node "
                             f"{self.gpus_per_node}: {error}") from None


def allocation_for(args: argparse.Namespace, resources: Resources) -> Allocation:
    """The allocation the options ask for; CPUs and GPUs per node default to one trial's, spread over the nodes."""
    workers_per_node = math.ceil(resources.workers / max(args.nodes, 1))
    cpus = args.cpus_per_node if args.cpus_per_node is not None else math.ceil(resources.cpu * workers_per_node)
    gpus = args.gpus_per_node if args.gpus_per_node is not None else math.ceil(resources.gpu * workers_per_node)
    return Allocation(args.nodes, cpus, gpus, args.time, args.partition, args.account)


@dataclass(frozen=True)
class BatchJob:
    """A sweep as a batch job: its allocation, its results store (an absolute path), the `kwlab sweep` command it
    runs (without --address) and the bin folder of the Python environment that has `ray` and `kwlab`."""

    allocation: Allocation
    store: Path
    sweep: list[str]
    bin_dir: Path

    @property
    def log_dir(self) -> Path:
        """Where the batch script and the jobs' logs go: the store's slurm/ folder."""
        return self.store / store.SLURM


def sbatch_options(job: BatchJob) -> list[str]:
    """The job's #SBATCH options: allocation, log file, and requeue with a SIGTERM warning before the time limit."""
    alloc = job.allocation
    optional = {"gpus-per-node": alloc.gpus_per_node or None, "time": alloc.time, "partition": alloc.partition,
                "account": alloc.account}
    log = str(job.log_dir).replace("%", "%%") + "/%j.out"  # '%%' is a literal '%' in Slurm's file name patterns
    return [f"--job-name=kwlab-{job.store.name}", f"--nodes={alloc.nodes}", "--ntasks-per-node=1",
            f"--cpus-per-task={alloc.cpus_per_node}",
            *(f"--{name}={value}" for name, value in optional.items() if value is not None),
            f"--output={log}", "--open-mode=append", "--requeue", f"--signal=B:TERM@{WARNING_S}"]


# NOTE: not `ray symmetric-run`, the recipe for Ray >= 2.49. Tried on Slurm 22.05 with Ray 2.60, it refused to start on
# a node where any Ray runs, it ends with `ray stop` (which stops every Ray process on the node it may signal, other
# jobs' included), it exited 0 when Ray failed to start, and SIGTERM passed on through srun killed the step before
# `kwlab sweep` could stop cleanly. Here the script runs the Ray head itself, and the other nodes' Ray under srun.
def batch_script(job: BatchJob) -> str:
    """The batch script: Ray started across the allocation, `kwlab sweep ... --address` on the first node with
    SIGTERM passed on to it, Ray stopped at the end; the script exits with the sweep's exit code."""
    alloc = job.allocation
    q = shlex.quote
    lines = ["#!/bin/bash",
             "# Written by `kwlab slurm`: `kwlab sweep` on Ray across the job's nodes. A requeued job runs this again",
             "# and the sweep resumes its results store; --open-mode=append keeps the first run's log (the default",
             f"# truncates it), --signal sends this script SIGTERM {WARNING_S} s before the time limit.",
             *(f"#SBATCH {q(option)}" for option in sbatch_options(job)),
             "",
             "set -u",
             f"export PATH={q(str(job.bin_dir))}:$PATH  # the Python environment kwlab slurm ran in",
             "# Ray's token authentication, a fresh token each run: srun passes it on to the other nodes",
             "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')",
             "# NOTE: no drain when a Ray node is stopped (Ray 2.60 waits up to 30 s for the node to go idle, measured",
             "# after a data-parallel trial): Ray is stopped once the sweep is done, or by Slurm itself",
             "export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0",
             'nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))',
             "# the first node's address as Slurm reaches it, as an IPv4 address",
             'head_addr=$(scontrol show node --oneliner "${nodes[0]}" | grep -o "NodeAddr=[^ ]*" | cut -d= -f2)',
             "head_ip=$(getent ahostsv4 \"$head_addr\" | awk 'NR == 1 {print $1}')",
             "# NOTE: the head's port and the workers' port range come from the job id, not from Ray's defaults (the",
             "# same for every Ray on a node), so jobs that share a node do not collide; a requeued job keeps its id",
             "port=$((20000 + SLURM_JOB_ID % 60 * 200))",
             'address="$head_ip:$port"',
             f'node_options="--num-cpus={alloc.cpus_per_node} --num-gpus={alloc.gpus_per_node} --disable-usage-stats'
             ' --min-worker-port=$((port + 1)) --max-worker-port=$((port + 199))"',
             f"ray_log={q(str(job.log_dir))}/$SLURM_JOB_ID.ray.log",
             "say() { echo \"$(date '+%F %T') job $SLURM_JOB_ID: $*\"; }",
             f"wait_for_nodes() {{  # until $1 Ray nodes are up; fails if the head exits, or after {NODES_WAIT_S} s",
             f"  local deadline=$((SECONDS + {NODES_WAIT_S})) up",
             "  until up=$(ray status --address=\"$address\" 2>/dev/null | grep -c ' node_'); ((up >= $1)); do",
             '    if ((SECONDS > deadline)) || ! kill -0 "$ray_head" 2>/dev/null; then',
             '      say "$up of $1 Ray nodes came up; see $ray_log" >&2',
             "      exit 1",
             "    fi",
             "    sleep 2",
             "  done",
             "}",
             "",
             'say "run ${SLURM_RESTART_COUNT:-0} on ${nodes[*]}; Ray head at $address (its log: $ray_log)"',
             'ray start --head --block --node-ip-address="$head_ip" --port="$port" --include-dashboard=false'
             ' $node_options >>"$ray_log" 2>&1 &',
             "ray_head=$!",
             "wait_for_nodes 1"]
    if alloc.nodes > 1:
        gpus = f" --gpus-per-node={alloc.gpus_per_node}" if alloc.gpus_per_node else ""
        lines += [f"srun --nodes={alloc.nodes - 1} --ntasks={alloc.nodes - 1} --relative=1{gpus} "
                  'ray start --block --address="$address" $node_options >>"$ray_log" 2>&1 &',
                  "ray_workers=$!",
                  f"wait_for_nodes {alloc.nodes}"]
    stop_ray = 'kill -TERM "$ray_head"' + (' "$ray_workers"' if alloc.nodes > 1 else "") + " 2>/dev/null"
    lines += ["",
              f'{shlex.join(job.sweep)} --address "$address" &',
              "sweep=$!",
              "# SIGTERM (the time limit's warning, a requeue) goes on to kwlab sweep: it keeps what finished and",
              "# exits 143",
              "trap 'say \"SIGTERM: passing it on to kwlab sweep\"; kill -TERM \"$sweep\" 2>/dev/null' TERM",
              'wait "$sweep"; status=$?',
              'while kill -0 "$sweep" 2>/dev/null; do wait "$sweep"; status=$?; done  # the trap ended a wait early',
              'say "kwlab sweep exited $status; stopping Ray"',
              stop_ray,
              "wait",
              'exit "$status"']
    return "\n".join(lines) + "\n"


def sweep_command(args: argparse.Namespace, root: str) -> list[str]:
    """`kwlab sweep` with the options given here, its spec as an absolute path and `root`, the results root (an
    absolute path, or a URI)."""
    command = ["kwlab", "sweep", str(Path(args.spec).resolve()), "--results", root]
    if args.profile is not None:
        command += ["--profile", args.profile]
    for assignment in args.set:
        command += ["--set", assignment]
    if args.max_concurrent is not None:
        command += ["--max-concurrent", str(args.max_concurrent)]
    return command


class SubmitError(Exception):
    """sbatch ran and refused the job (exit code 1: the input was fine, the cluster said no)."""


def submit(script: Path) -> str:
    """Submit the batch script with sbatch and return the job id; a SubmitError names sbatch's reason for refusing."""
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise SubmitError(f"sbatch refused {script}: {reason}")
    return done.stdout.strip().split(";")[0]  # --parsable: "id" or "id;cluster"


def main(args: argparse.Namespace) -> int:
    """Write the batch script into the store and submit it (or print it with --dry-run); see the module doc."""
    check_max_concurrent(args.max_concurrent)
    plan = plan_sweep(args.spec, args.profile, args.set)
    allocation = allocation_for(args, plan.spec.resources)
    allocation.check_trial_fits(plan.spec.resources)
    results = store_folder(args, plan)
    # a store at a URI keeps the job's script and logs in its folder under the user's cache (Slurm writes them)
    folder = results.path.resolve() if results.local else results.storage.cache
    root = str(folder.parent) if results.local else (args.results or plan.spec.results_dir)
    job = BatchJob(allocation, folder, sweep_command(args, root), Path(sys.executable).parent)
    script = batch_script(job)
    if args.dry_run:
        print(script, end="")
        return 0
    if shutil.which("sbatch") is None:
        raise KWLabError("sbatch: not found; run kwlab slurm where Slurm's commands are (a login node), or print "
                         "the batch script with --dry-run")
    path = job.log_dir / store.SLURM_SCRIPT
    try:
        write_text(path, script)
        job_id = submit(path)
    except (WriteError, SubmitError) as error:
        print(f"kwlab slurm: {error}", file=sys.stderr)
        return 1
    print(f"submitted batch job {job_id}: {plan.spec.name} into {results}, its log {job.log_dir / job_id}.out")
    return 0
