"""The README's commands parse, name real experiments and resolve (DESIGN rule 9)."""

import re
import shlex
from pathlib import Path

import pytest

from springback.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part.strip())
                # `springback ...` or `accelerate launch ... -m springback ...`
                if "springback" in words and words[0] in ("springback", "accelerate"):
                    cmds.append(words[words.index("springback") + 1:])
    return cmds


def test_readme_quick_start_has_install_reproduce_and_pytest():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [l.split("#")[0].strip() for l in quick.strip().splitlines()]
    assert lines[0].startswith("pip install torch==2.13.0") and 'pip install -e ".[dev]"' in lines[0]
    assert lines[1] == "springback reproduce"
    assert lines[2] == "pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install torch==2.13.0" in ci and 'pip install -e ".[dev]"' in ci and "pytest" in ci


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_parses(argv, tmp_path, monkeypatch):
    from springback.api import resolve_config
    from springback.experiments import EXPERIMENTS

    args = build_parser().parse_args(argv)
    assert args.command in ("list", "run", "reproduce", "report", "compress", "elasticity", "compare", "align")
    if args.command == "run":
        assert args.experiment in EXPERIMENTS
        if args.config is None or (ROOT / args.config).exists():
            monkeypatch.chdir(ROOT)
            resolve_config(args.experiment, args.preset, args.config, args.sets)
    if args.command == "reproduce" and args.only:
        assert set(args.only) <= set(EXPERIMENTS)
