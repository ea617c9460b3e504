"""The results format lives in kwlab.store alone: its file names appear nowhere else, its tables give back what was
swept, its lock names its holder and gives way only to a dead one."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
from pathlib import Path

import pandas as pd
import pytest

from kwlab import store
from kwlab.best import natural_goal
from kwlab.errors import KWLabError

ROOT = Path(__file__).parents[1]
NAMES = {store.SPEC, store.PLAN, store.MANIFEST, store.LOCK, store.TRIALS_TABLE, store.EPOCHS_TABLE, store.CONFIG, store.METRICS,
         store.CHECKPOINT, store.BEST, store.ATTENTION, store.SUMMARY, store.SWEEP, store.LOG, store.ERROR,
         store.STOPPED}


def string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant of a module that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_store_file_name_is_spelled_outside_the_store_module() -> None:
    files = [p for folder in ("kwlab", "analysis", "tests", "scripts") for p in (ROOT / folder).rglob("*.py")
             if p != ROOT / "kwlab" / "store.py"]
    spelled = re.compile("|".join(rf"(?<![\w.-]){re.escape(name)}(?![\w])" for name in NAMES))
    found = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in files for line, text in string_literals(p)
             if spelled.search(text)]
    assert found == []


def test_typed_tables_give_back_what_was_swept(tmp_path: Path) -> None:
    results = store.Store(tmp_path)
    values = ["none", 2, 0.5, None, {"width": 0.5}, [1, 2]]
    for index, value in enumerate(values):
        trial = results.trial(f"t{index}")
        trial.path.mkdir(parents=True)
        trial.write_sweep_meta({"trial_id": f"t{index}", "variant_id": f"v{index}", "variant": f"v{index}",
                                "is_baseline": False, "seed": 0, "parameters": {"kw.sharing": value, "lr": 0.1 * index},
                                "price": {"params_total": 10 + index}})
    results.write_tables()
    trials = store.load(tmp_path).trials.sort_values("trial_id")
    assert trials["kw.sharing"].tolist() == values  # mixed types, as swept
    assert [type(v) for v in trials["kw.sharing"]] == [str, int, float, type(None), dict, list]
    assert trials["lr"].dtype == float and trials["params_total"].tolist() == list(range(10, 16))
    assert pd.read_parquet(tmp_path / store.TRIALS_TABLE)["kw.sharing"].tolist()[0] == json.dumps("none")


def test_the_lock_names_its_holder_and_gives_way_only_to_a_dead_one(tmp_path: Path) -> None:
    lock = store.Store(tmp_path).lock("kwlab sweep x.yaml")
    with lock:
        holder = json.loads((tmp_path / store.LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(KWLabError, match=rf"another kwlab runner .* \(pid {os.getpid()} on "):
            store.Store(tmp_path).lock().acquire()
    assert not (tmp_path / store.LOCK).exists()
    (tmp_path / store.LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then"}))
    with pytest.raises(KWLabError, match="pid 1 on elsewhere"):  # another node's runner: kwlab cannot tell
        store.Store(tmp_path).lock().acquire()
    gone = 2**22 + 12345  # above the default pid_max: no such process here
    (tmp_path / store.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": gone, "started": "then"}))
    taken = store.Store(tmp_path).lock()
    taken.acquire()
    assert taken.taken_over["pid"] == gone
    assert json.loads((tmp_path / store.LOCK).read_text())["pid"] == os.getpid()
    taken.release()


@pytest.mark.parametrize(("name", "goal"), [("val_loss", "minimize"), ("train_loss", "minimize"),
                                            ("val_top1", "maximize"), ("ema_val_top5", "maximize")])
def test_best_follows_the_metric_direction(name: str, goal: str) -> None:
    history = [{"epoch": e, name: v} for e, v in enumerate([3.0, 1.0, 2.0], start=1)]
    summary = store.summarize_epochs(history)
    assert natural_goal(name) == goal
    assert summary[f"best_{name}"] == (1.0 if goal == "minimize" else 3.0) and summary[f"final_{name}"] == 2.0
    assert summary[f"best_{name}_epoch"] == (2 if goal == "minimize" else 1)
