import subprocess
import sys

import pytest

from springback.cli import main


def _run(args, tmp_path):
    return subprocess.run([sys.executable, "-m", "springback", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "nosuch"], "unknown experiment 'nosuch'"),
        (["run", "rebound", "--preset", "huge"], "unknown preset 'huge'"),
        (["run", "rebound", "--set", "bogus=1"], "unknown config key 'bogus'"),
        (["run", "rebound", "--set", "align.lr=fast"], "align.lr: expected a number"),
        (["run", "rebound", "--set", "worlds=[nowhere]"], "unknown world 'nowhere'"),
        (["run", "rebound", "--set", "model.preset=huge"], "unknown size preset 'huge'"),
        (["run", "rebound", "--config", "missing.yaml"], "config file not found"),
        (["reproduce", "--set", "rebound:bogus=1"], "unknown config key 'bogus'"),
        (["reproduce", "--set", "nosuch:seeds=[0]"], "EXPERIMENT:key=value"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_exit_status_through_the_console_script(tmp_path):
    res = _run(["run", "nosuch", "--out", str(tmp_path / "out")], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == "springback: error: unknown experiment 'nosuch' (choose from: " + \
        res.stderr.split("choose from: ")[1].strip()
    assert not (tmp_path / "out").exists()


def test_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0, 1\nalign: {lr: }\n")
    assert main(["run", "rebound", "--config", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "malformed YAML" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_list_and_dry_run(capsys, tmp_path):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    kinds = {line.split()[0] for line in out}
    assert kinds == {"experiment", "algorithm", "world", "scorer", "preset"}
    assert any(line.split()[1] == "rebound" for line in out if line.startswith("experiment"))
    assert [line.split()[1] for line in out if line.startswith("algorithm")] == ["sft", "dpo", "ipo", "kto", "simpo", "rloo"]
    assert main(["run", "rebound", "--dry-run", "--set", "seeds=[4]", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "seeds:\n- 4" in text
    assert text.strip().splitlines()[-1].startswith(str(tmp_path / "rebound-"))
    assert not any(tmp_path.iterdir())


def test_help_for_every_command(capsys):
    from springback.cli import COMMANDS

    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert capsys.readouterr().out.strip()
