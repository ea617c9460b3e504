"""`kwlab slurm` as a user drives it: the batch script it prints, bad input refused before submitting, and, against a
real Slurm (Debian's slurm-wlm and munge, two nodes on this machine, started on loopback here), a sweep run as a job,
a job requeued mid-sweep that resumes its results store, and a trial whose workers span both nodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import kwlab.results
from kwlab import store
from kwlab.cli import main
from kwlab.cluster.slurm import Allocation, BatchJob, batch_script, time_limit_seconds
from sweep_helpers import kwlab_cli, write_spec

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "scontrol", "sinfo", "squeue", "scancel")
NODES = ("node1", "node2")  # Slurm nodes, both on this machine
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
         "OUT_OF_MEMORY"}


def _which(name: str) -> str | None:
    """A program on PATH, or in /usr/sbin (where Debian puts the daemons, outside a user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LocalSlurm:
    """A Slurm cluster of two nodes on this machine: its config folder, the environment that points Slurm's commands
    at it (SLURM_CONF) and its daemons."""

    folder: Path
    env: dict[str, str]
    daemons: list[subprocess.Popen]

    def run(self, *command: str) -> str:
        """Run one of Slurm's commands against this cluster; its stdout."""
        return subprocess.run(command, env={**os.environ, **self.env}, capture_output=True, text=True,
                              check=True, timeout=60).stdout

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job`'s fields of a job (JobState, Restarts, ExitCode...)."""
        fields = self.run("scontrol", "show", "job", "--oneliner", job_id).split()
        return dict(field.split("=", 1) for field in fields if "=" in field)

    def wait_for_end(self, job_id: str, restarts: int = 0, timeout: float = 600) -> dict[str, str]:
        """Wait until the job has ended after at least `restarts` requeues; its fields."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.job(job_id)
            if job["JobState"] in ENDED and int(job["Restarts"]) >= restarts:
                return job
            time.sleep(1)
        raise AssertionError(f"job {job_id} still {job['JobState']} after {timeout} s: {job}")

    def logs(self) -> str:
        """The daemons' logs, for a failure message."""
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.folder.glob("*.log")))


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    """munged, slurmctld and a slurmd per node started for these tests, on loopback and free ports, stopped at the
    end."""
    missing = [name for name in (*DAEMONS, *COMMANDS) if _which(name) is None]
    if missing:
        pytest.skip(f"Slurm absent ({', '.join(missing)} not found): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (slurmd runs each job as its user)")
    # NOTE: not pytest's tmp_path: munged wants every folder above its socket searchable by all, and pytest's are 0700
    folder = Path(tempfile.mkdtemp(prefix="kwlab-slurm-"))
    folder.chmod(0o755)
    for name in ("munge-key", "munge-run", "state", "spool"):
        (folder / name).mkdir(mode=0o700 if name == "munge-key" else 0o755)
    key, socket_path = folder / "munge-key" / "munge.key", folder / "munge-run" / "munge.socket"
    subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=localhost",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={_free_port()}",
        # its own munged; cred_expire (120 s by default) is also how long a requeued job waits before it starts again
        f"AuthInfo=socket={socket_path},cred_expire=5",
        "SlurmUser=root",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}/%n",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd'}-%n.pid",
        "MpiDefault=none",
        "ProctrackType=proctrack/pgid",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerParameters=sched_interval=2",  # a requeued job starts within seconds of its wait, not a minute
        "ReturnToService=1",
        # two nodes of one CPU on this machine, each its own slurmd on loopback
        *(f"NodeName={node} NodeHostname={socket.gethostname().split('.')[0]} NodeAddr=127.0.0.1 "
          f"Port={_free_port()} CPUs=1 State=UNKNOWN" for node in NODES),
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n")
    cluster = LocalSlurm(folder, {"SLURM_CONF": str(conf)}, [])
    try:
        cluster.daemons.append(_start([_which("munged"), "--foreground", f"--socket={socket_path}",
                                       f"--key-file={key}", f"--pid-file={folder / 'munge-run' / 'munged.pid'}",
                                       f"--seed-file={folder / 'munge-key' / 'munged.seed'}"], folder / "munged.log"))
        deadline = time.time() + 30
        while not socket_path.exists() and time.time() < deadline:
            time.sleep(0.1)
        cluster.daemons.append(_start([_which("slurmctld"), "-D", "-f", str(conf)], folder / "slurmctld.log"))
        for node in NODES:
            cluster.daemons.append(_start([_which("slurmd"), "-D", "-f", str(conf), "-N", node],
                                          folder / f"slurmd-{node}.log"))
        deadline = time.time() + 60
        while time.time() < deadline:
            states = subprocess.run([_which("sinfo"), "--noheader", "--Node", "--format=%t"], capture_output=True,
                                    text=True, env={**os.environ, **cluster.env}).stdout.split()
            if states == ["idle"] * len(NODES):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the local Slurm did not come up within 60 s (node: {states})\n{cluster.logs()}")
        yield cluster
    finally:
        subprocess.run([_which("scancel"), "--user=root"], env={**os.environ, **cluster.env}, capture_output=True)
        deadline = time.time() + 60
        while time.time() < deadline and subprocess.run(
                [_which("squeue"), "--noheader"], env={**os.environ, **cluster.env}, capture_output=True,
                text=True).stdout.strip():
            time.sleep(1)
        for daemon in reversed(cluster.daemons):
            _stop(daemon)
        shutil.rmtree(folder, ignore_errors=True)


def _grid_spec(folder: Path, name: str, epochs: int, train_size: int = 300) -> Path:
    """2 variants x 2 seeds, one trial at a time: each a second or two on the tiny digits base."""
    return write_spec(folder, name, parameters={"kw.budget": {"values": [1, 2]}}, seeds=[0, 1],
                      max_concurrent_trials=1, fixed={"epochs": epochs, "data.train_size": train_size})


def _one_line_error(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("kwlab slurm: error: "), err


def test_dry_run_prints_the_batch_script_and_submits_nothing(tmp_path: Path) -> None:
    spec = _grid_spec(tmp_path, "dry", epochs=3)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(f"#!/bin/sh\ntouch {tmp_path / 'submitted'}\n")  # would show a submission
    (fake / "sbatch").chmod(0o755)
    root = tmp_path / "results"
    result = kwlab_cli("slurm", str(spec), "--results", str(root), "--nodes", "2", "--cpus-per-node", "2",
                       "--time", "1:00:00", "--partition", "debug", "--account", "lab", "--max-concurrent", "1",
                       "--set", "optim.lr=0.05", "--dry-run", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    script = result.stdout
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for option in ("--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=2", "--time=1:00:00", "--partition=debug",
                   "--account=lab", f"--output={root / 'dry' / store.SLURM}/%j.out", "--open-mode=append",
                   "--requeue", "--signal=B:TERM@120"):
        assert f"#SBATCH {option}" in lines, option
    assert not any("--gpus-per-node" in line for line in lines)  # the trials ask for no GPU
    assert f'kwlab sweep {spec} --results {root} --set optim.lr=0.05 --max-concurrent 1 --address "$address" &' in lines
    assert any(line.startswith("ray start --head --block") for line in lines)
    assert any(line.startswith("srun --nodes=1 --ntasks=1 --relative=1 ray start --block") for line in lines)
    assert any(line.startswith("trap ") and 'kill -TERM "$sweep"' in line and line.endswith(" TERM") for line in lines)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # the shell parses it
    assert not (tmp_path / "submitted").exists() and not root.exists()  # nothing submitted, nothing written


def test_the_script_of_a_gpu_job_over_three_nodes() -> None:
    job = BatchJob(Allocation(nodes=3, cpus_per_node=8, gpus_per_node=2, time="1-12"), Path("/shared/results/budget"),
                   ["kwlab", "sweep", "/shared/sweeps/budget.yaml", "--results", "/shared/results"], Path("/env/bin"))
    lines = batch_script(job).splitlines()
    for option in ("--nodes=3", "--cpus-per-task=8", "--gpus-per-node=2", "--time=1-12",
                   "--output=/shared/results/budget/slurm/%j.out"):
        assert f"#SBATCH {option}" in lines, option
    assert "export PATH=/env/bin:$PATH  # the Python environment kwlab slurm ran in" in lines
    assert any("--num-cpus=8 --num-gpus=2" in line for line in lines)  # each node's Ray gets the node's share
    assert any(line.startswith("srun --nodes=2 --ntasks=2 --relative=1 --gpus-per-node=2 ray start") for line in lines)
    assert "wait_for_nodes 3" in lines


@pytest.mark.parametrize(("text", "seconds"), [("90", 5400), ("90:30", 5430), ("1:30:00", 5400), ("2-12", 216000),
                                               ("2-12:30", 217800), ("1-0:0:5", 86405), ("0", None),
                                               ("UNLIMITED", None)])
def test_slurm_time_limits(text: str, seconds: int | None) -> None:
    assert time_limit_seconds(text) == seconds


def test_bad_input_is_one_line_and_exit_2_before_anything_is_submitted(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: the last case
    root = str(tmp_path / "results")
    bad = write_spec(tmp_path, "bad", parameters={"kw.cell_in_ratio": {"values": [0.3]}})
    assert main(["slurm", str(bad), "--results", root]) == 2
    _one_line_error(err := capsys.readouterr().err)
    assert str(bad) in err and "cell_in_ratio" in err
    spec = _grid_spec(tmp_path, "ok", epochs=1)
    assert main(["slurm", str(spec), "--results", root, "--set", "resources.gpu=1", "--gpus-per-node", "0"]) == 2
    _one_line_error(err := capsys.readouterr().err)
    assert "--gpus-per-node 0: resources: each trial asks for 1 GPU; the cluster has 0" in err
    assert main(["slurm", str(spec), "--results", root, "--time", "soon"]) == 2
    _one_line_error(err := capsys.readouterr().err)
    assert "--time: 'soon' is not a Slurm time limit" in err
    assert main(["slurm", str(spec), "--results", root, "--time", "2:00"]) == 2  # 2 minutes: not past the warning
    _one_line_error(err := capsys.readouterr().err)
    assert "told to stop 120 s before the limit" in err
    assert main(["slurm", str(spec), "--results", root]) == 2
    _one_line_error(err := capsys.readouterr().err)
    assert "sbatch: not found" in err
    assert not (tmp_path / "results").exists()


def test_a_job_sbatch_refuses_is_one_line_and_exit_1(slurm: LocalSlurm, tmp_path: Path) -> None:
    spec = _grid_spec(tmp_path, "refused", epochs=1)
    result = kwlab_cli("slurm", str(spec), "--results", str(tmp_path), "--partition", "nosuch", env=slurm.env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kwlab slurm: sbatch refused ")
    assert "partition" in result.stderr.lower()


def _submitted(result: subprocess.CompletedProcess) -> str:
    """The job id `kwlab slurm` printed (one line)."""
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"submitted batch job (\d+): .*\n", result.stdout)
    assert match, result.stdout
    return match.group(1)


def _epochs(trial: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (trial / store.METRICS).read_text().splitlines()]


# slow: a job that starts Ray and runs a small sweep, 44-71 s measured here (2 shared cores, load 1.5-4)
@pytest.mark.slow
def test_a_sweep_runs_as_a_slurm_job(slurm: LocalSlurm, tmp_path: Path) -> None:
    spec = _grid_spec(tmp_path, "job", epochs=3)
    job_id = _submitted(kwlab_cli("slurm", str(spec), "--results", str(tmp_path), env=slurm.env))
    folder = tmp_path / "job"
    job = slurm.wait_for_end(job_id)
    log = folder / store.SLURM / f"{job_id}.out"
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", log.read_text()
    assert "job: 4 of 4 trials finished, 0 failed, 0 not finished" in log.read_text()
    assert (folder / store.SLURM / store.SLURM_SCRIPT).is_file()
    assert (folder / store.SLURM / f"{job_id}.ray.log").is_file()  # Ray's own output, apart from the sweep's
    trials = kwlab.results.load(folder).trials
    assert len(trials) == 4 and (trials["status"] == "finished").all()
    status = kwlab_cli("status", str(folder), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"] == {"finished": 4, "stopped": 0, "failed": 0, "running": 0,
                                                   "pending": 0, "missing": 0}


def _mid_sweep(slurm: LocalSlurm, job_id: str, trials: Path) -> dict[str, int]:
    """Wait until one trial has finished and another is mid-way; the finished trials' summary.json times."""
    deadline = time.time() + 600
    while time.time() < deadline:
        finished = [t for t in trials.glob("*") if (t / store.SUMMARY).exists()]
        midway = [t for t in trials.glob("*") if (t / store.METRICS).exists() and not (t / store.SUMMARY).exists()
                  and 0 < len(_epochs(t)) < 4]
        if finished and midway:
            return {t.name: (t / store.SUMMARY).stat().st_mtime_ns for t in finished}
        assert slurm.job(job_id)["JobState"] not in ENDED, "the job ended before one trial was mid-way"
        time.sleep(0.1)
    raise AssertionError("no trial was mid-way while another had finished")


def _check_resumed(folder: Path, summaries: dict[str, int], log: str) -> None:
    """Every trial finished with each of its 4 epochs recorded once, and those finished before the stop untouched."""
    results = kwlab.results.load(folder)
    assert len(results.trials) == 4 and (results.trials["status"] == "finished").all()
    trials = folder / store.TRIALS
    for trial in trials.glob("*"):
        assert _epochs(trial) == [1, 2, 3, 4], trial.name
    for name, mtime in summaries.items():  # not run again
        assert (trials / name / store.SUMMARY).stat().st_mtime_ns == mtime
    assert len(re.findall(r"^\S+ epoch \d+ ", log, flags=re.MULTILINE)) <= 16  # no more epochs run than 4 x 4


# slow: two runs of the job, the second after Slurm's requeue delay: 108-134 s measured here
@pytest.mark.slow
def test_a_job_requeued_mid_sweep_resumes_its_store(slurm: LocalSlurm, tmp_path: Path) -> None:
    spec = _grid_spec(tmp_path, "requeued", epochs=4, train_size=1100)  # 4 trials of about 4 s
    job_id = _submitted(kwlab_cli("slurm", str(spec), "--results", str(tmp_path), env=slurm.env))
    summaries = _mid_sweep(slurm, job_id, tmp_path / "requeued" / store.TRIALS)
    slurm.run("scontrol", "requeue", job_id)
    job = slurm.wait_for_end(job_id, restarts=1)
    log = (tmp_path / "requeued" / store.SLURM / f"{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", log
    # the requeue sent the batch script SIGTERM (and every process of the job); kwlab sweep kept what finished and
    # exited 143, and the same script ran again and resumed the store
    assert "SIGTERM: passing it on to kwlab sweep" in log
    assert "terminated (SIGTERM): finished trials are kept" in log and "kwlab sweep exited 143" in log
    assert f"job {job_id}: run 1 on " in log and "requeued: 4 of 4 trials finished" in log
    _check_resumed(tmp_path / "requeued", summaries, log)


# slow: two jobs, 128-164 s measured here
@pytest.mark.slow
def test_the_time_limit_warning_stops_the_sweep_and_a_resubmission_resumes_it(slurm: LocalSlurm,
                                                                               tmp_path: Path) -> None:
    spec = _grid_spec(tmp_path, "warned", epochs=4, train_size=1100)
    submit = ("slurm", str(spec), "--results", str(tmp_path))
    first = _submitted(kwlab_cli(*submit, env=slurm.env))
    summaries = _mid_sweep(slurm, first, tmp_path / "warned" / store.TRIALS)
    # what --signal=B:TERM@120 does 120 s before the time limit: SIGTERM to the batch script alone
    slurm.run("scancel", "--batch", "--signal=TERM", first)
    job = slurm.wait_for_end(first)
    log = (tmp_path / "warned" / store.SLURM / f"{first}.out").read_text()
    assert job["ExitCode"] == "143:0", log  # the sweep's exit code: terminated, everything kept
    assert "SIGTERM: passing it on to kwlab sweep" in log and "terminated (SIGTERM): finished trials are kept" in log
    second = _submitted(kwlab_cli(*submit, env=slurm.env))
    job = slurm.wait_for_end(second)
    resumed = (tmp_path / "warned" / store.SLURM / f"{second}.out").read_text()
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", resumed
    done_earlier = re.search(r"\((\d+) done earlier\)", resumed)  # the rerun skipped what finished before the stop
    assert done_earlier and int(done_earlier.group(1)) >= len(summaries), resumed
    assert "warned: 4 of 4 trials finished" in resumed
    _check_resumed(tmp_path / "warned", summaries, log + resumed)


# slow: Ray on two nodes and a data-parallel trial, 89-136 s measured here
@pytest.mark.slow
def test_a_trial_spans_the_nodes_of_the_job(slurm: LocalSlurm, tmp_path: Path) -> None:
    # two workers of one CPU each, on nodes of one CPU each: the trial runs only if Ray joined both nodes
    spec = write_spec(tmp_path, "spanning", parameters={"kw.budget": {"values": [1]}}, fixed={"epochs": 2},
                      resources={"cpu": 1, "workers": 2})
    job_id = _submitted(kwlab_cli("slurm", str(spec), "--results", str(tmp_path), "--nodes", "2", env=slurm.env))
    job = slurm.wait_for_end(job_id)
    log = (tmp_path / "spanning" / store.SLURM / f"{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", log
    assert f"job {job_id}: run 0 on {' '.join(NODES)};" in log and "spanning: 1 of 1 trials finished" in log
    assert (kwlab.results.load(tmp_path / "spanning").trials["status"] == "finished").all()
