"""Runs survive interruption, refuse concurrent writers, and fail loudly (issue: reliability)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from springback.errors import SpringbackError
from springback.io import RecordLog, RunLock, atomic_write_text, check_writable


def test_record_log_drops_torn_tail_and_unfinished_cells(tmp_path):
    log = RecordLog(tmp_path / "records.jsonl")
    log.append_cell("a", [{"x": 1}, {"x": 2}])
    # A cell that was being written when the process died: rows without a sentinel, torn last line.
    with open(log.path, "a") as fh:
        fh.write(json.dumps({"x": 3, "cell": "b"}) + "\n" + '{"x": 4, "ce')
    assert [r["x"] for r in log.rows()] == [1, 2]
    assert log.done_cells() == {"a"}
    assert log.repair() > 0
    assert log.path.read_text().endswith("\n")
    log.append_cell("b", [{"x": 3}])
    assert [r["x"] for r in log.rows()] == [1, 2, 3]
    assert all(r["cell"] in ("a", "b") for r in log.rows())


def test_atomic_write_never_leaves_partial_files(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")

    with pytest.raises(TypeError):
        atomic_write_text(target, object())  # type: ignore[arg-type]  # fails mid-write
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_second_process_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(SpringbackError, match="another springback process"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released
        pass


def test_unwritable_or_full_output_fails_early(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpringbackError, match="not writable"):
        check_writable(blocker / "runs")

    class Tiny:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda p: Tiny())
    with pytest.raises(SpringbackError, match="not enough free disk space"):
        check_writable(tmp_path / "ok")


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "springback", *args], capture_output=True, text=True, **kw)


def test_cli_refuses_locked_run_dir(tmp_path, tiny_rebound_sets):
    sets = [a for s in tiny_rebound_sets for a in ("--set", s)]
    dry = _cli(["run", "rebound", "--dry-run", "--out", str(tmp_path), *sets])
    run_dir = Path(dry.stdout.strip().splitlines()[-1])
    with RunLock(run_dir):
        res = _cli(["run", "rebound", "--quiet", "--out", str(tmp_path), *sets], timeout=120)
    assert res.returncode == 2
    assert "another springback process" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, tiny_rebound_sets):
    """Kill a real run part-way with SIGKILL, run again: identical records, none lost or duplicated."""
    sets = [a for s in tiny_rebound_sets for a in ("--set", s)]
    ref_out, kill_out = tmp_path / "ref", tmp_path / "killed"
    ref = _cli(["run", "rebound", "--quiet", "--out", str(ref_out), *sets], timeout=600)
    assert ref.returncode == 0, ref.stderr
    ref_dir = Path(ref.stdout.strip().splitlines()[-1])
    ref_rows = RecordLog(ref_dir / "records.jsonl").rows()

    proc = subprocess.Popen([sys.executable, "-m", "springback", "run", "rebound", "--quiet", "--out", str(kill_out), *sets],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    records = kill_out / ref_dir.name / "records.jsonl"
    deadline = time.time() + 300
    # Kill after the first cell is written but before the run ends.
    while time.time() < deadline and proc.poll() is None:
        if records.exists() and records.read_text().count("_cell_done") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed; make the test config larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = RecordLog(records).rows()
    assert 0 < len(partial) < len(ref_rows)

    again = _cli(["run", "rebound", "--quiet", "--out", str(kill_out), *sets], timeout=600)
    assert again.returncode == 0, again.stderr
    rows = RecordLog(records).rows()
    assert rows == ref_rows  # same numbers, same order, no duplicates
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == len(rows)
    claims_ref = json.loads((ref_dir / "result.json").read_text())["claims"]
    claims_again = json.loads((records.parent / "result.json").read_text())["claims"]
    assert claims_ref == claims_again


@pytest.mark.slow
def test_divergence_marks_cell_failed(tmp_path, tiny_rebound_sets, monkeypatch, capsys):
    """A non-finite training loss stops the run with one line naming the stage and step, exit 2,
    and the cell recorded in failed_cells.jsonl. (Huge learning rates no longer produce NaN on
    today's stack — RMSNorm saturates and the model collapses to uniform — so the loss the one
    training loop sees is made non-finite at its 3rd update instead; here that is the base's pre-training.)"""
    import springback.objectives as tr  # the SFT objective computes the loop's loss
    from springback.cli import main

    real = tr.per_example_loss
    calls = {"n": 0}

    def poisoned(model, batch):
        losses = real(model, batch)
        if model.training:
            calls["n"] += 1
            if calls["n"] == 3:
                return losses * float("nan")
        return losses

    monkeypatch.setattr(tr, "per_example_loss", poisoned)
    rc = main(["run", "rebound", "--quiet", "--out", str(tmp_path), *[a for s in tiny_rebound_sets for a in ("--set", s)],
               "--set", "seeds=[0]", "--set", "n_pos=[100]", "--set", "world.n_task_examples=200",
               "--set", "world.n_general_examples=40", "--set", "pretrain.epochs=1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "diverged in stage 'pretrain" in err and "at step 2" in err and "marked failed" in err
    failed = list(tmp_path.glob("rebound-*/failed_cells.jsonl"))
    assert failed and json.loads(failed[0].read_text().splitlines()[0])["stage"].startswith("pretrain")
