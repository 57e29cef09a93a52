"""Command line: one subcommand per public API function, same argument names.

Errors the user can fix print one line (``springback: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from .errors import SpringbackError

# name -> (help, add_arguments(parser), handler(args) -> exit code)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    def deco(fn):
        COMMANDS[name] = (help, fn.add_arguments, fn)  # type: ignore[attr-defined]
        return fn

    return deco


def _args(fn: Callable[[argparse.ArgumentParser], None]):
    def wrap(handler):
        handler.add_arguments = fn
        return handler

    return wrap


# ----------------------------------------------------------------------------- list


def _list_args(p: argparse.ArgumentParser) -> None:
    pass


@command("list", "experiments, worlds, scorers and size presets, one line each")
@_args(_list_args)
def cmd_list(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS
    from .measure import SCORERS
    from .models import PRESETS, preset_parameters
    from .worlds import WORLDS

    for name, exp in EXPERIMENTS.items():
        print(f"experiment  {name:<12} {exp.description}")
    for name, make in WORLDS.items():
        print(f"world       {name:<12} {make().description}")
    for name, desc in SCORERS.items():
        print(f"scorer      {name:<12} {desc}")
    for name, p in PRESETS.items():
        n = preset_parameters(name, 100)
        print(f"preset      {name:<12} {n / 1e6:.2f}M parameters (100-word vocabulary): hidden {p.hidden_size}, "
              f"{p.n_layers} layers, {p.n_heads} heads")
    return 0


# ----------------------------------------------------------------------------- compress


def _compress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="PATH",
                   help="a local causal LM directory: a world model (e.g. springback-runs/_cache/bases/*) or any HF model")
    p.add_argument("--data", required=True, metavar="FILE", help="plain text (.txt, one text per line) or .jsonl with a \"text\" field")
    p.add_argument("--arith", action="store_true", help="also arithmetic-code the tokens, decode them back and compare sizes")
    p.add_argument("--max-bytes", dest="max_bytes", type=int, default=None, metavar="N", help="use only the first N bytes of text")
    p.add_argument("--window", type=int, default=None, metavar="TOKENS", help="sliding-window length (default: the model's context, at most 1024)")
    p.add_argument("--stride", type=int, default=None, metavar="TOKENS", help="new tokens scored per window after the first (default: window/2)")
    p.add_argument("--eos", action="store_true", help="append and score an EOS after every text (world models are trained with one)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("compress", "compression rate of a model on a text file (bits/token, bits/byte, γ) against gzip, bz2, xz")
@_args(_compress_args)
def cmd_compress(args: argparse.Namespace) -> int:
    import json

    from .measure.compression import compress_file

    r = compress_file(args.model, args.data, arith=args.arith, max_bytes=args.max_bytes, window=args.window,
                      stride=args.stride, add_eos=args.eos)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    m = r["model_rate"]
    print(f"model     {r['model']}  (vocabulary {r['vocab_size']}, window {r['window']} tokens)")
    print(f"data      {r['data']}: {m['n_texts']} texts, {m['n_bytes']} bytes, {m['n_tokens']} scored tokens")
    print(f"{'coder':<22}{'bytes':>10}{'bits/token':>12}{'bits/byte':>11}{'γ':>8}")
    print(f"{'model (ideal)':<22}{m['code_bits'] / 8:>10.1f}{m['bits_per_token']:>12.4f}{m['bits_per_byte']:>11.4f}{m['gamma']:>8.4f}")
    if "arith" in r:
        a = r["arith"]
        for label, size in (("model (arith payload)", a["payload_bytes"]), ("model (arith total)", a["total_bytes"])):
            print(f"{label:<22}{size:>10d}{8 * size / m['n_tokens']:>12.4f}{8 * size / m['n_bytes']:>11.4f}{size / m['n_bytes']:>8.4f}")
    for name, b in r["baselines"].items():
        print(f"{name:<22}{b['bytes']:>10d}{'':>12}{b['bits_per_byte']:>11.4f}{b['gamma']:>8.4f}")
    if "arith" in r:
        a = r["arith"]
        print(f"arith     payload {a['payload_bytes']} B vs ideal {a['ideal_bytes']:.1f} B: overhead {a['payload_overhead_bytes']:+.2f} B "
              f"({a['payload_overhead_bytes_per_sequence']:+.3f} B/sequence); header {a['header_bytes']} B "
              f"(boundaries: {a['boundaries']}; CRC-32); round trip: tokens {'exact' if a['roundtrip_tokens_exact'] else 'FAILED'}, "
              f"text {'exact' if a['roundtrip_text_exact'] else str(a['roundtrip_texts_differ']) + ' of ' + str(m['n_texts']) + ' texts differ (the tokenizer normalises them or maps unknown words to <unk>)'}")
    print("(gzip/bz2/xz compress the texts joined by newlines: their byte count includes the newlines)")
    return 0 if "arith" not in r or r["arith"]["roundtrip_tokens_exact"] else 1


# ----------------------------------------------------------------------------- run


def _config_args(p: argparse.ArgumentParser, set_example: str) -> None:
    """The options every config-driven command shares: preset, YAML file, overrides, output, progress."""
    p.add_argument("--preset", default="quick", help="named preset: quick (laptop CPU, minutes) or full (more seeds, bigger grids)")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="YAML file with config values (applied after the preset)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one config value, e.g. {set_example} (repeatable)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder for runs and the shared model cache (default: springback-runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (see `springback list`)")
    _config_args(p, "--set seeds=[0,1] --set align.lr=1e-4")
    _executor_arg(p)
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the run directory, then exit")


def _executor_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default=None, choices=["local", "serial", "slurm", "ray", "auto"],
                   help="where cells run: local (worker processes, one per core; default), serial (this process; "
                        "`accelerate launch`), slurm (submitit job arrays), ray; options via --set executor.KEY=VALUE, "
                        "e.g. executor.partition=gpu executor.gpus_per_task=1 (they change no result)")


@command("run", "run one experiment; prints the run directory as its last line")
@_args(_run_args)
def cmd_run(args: argparse.Namespace) -> int:
    from . import api
    from .config import dump_yaml

    from .pipeline.executors import executor_config, split_sets

    out = args.out or api.DEFAULT_OUT
    exp_sets, ex_sets = split_sets(args.sets)
    cfg = api.resolve_config(args.experiment, args.preset, args.config, exp_sets)
    ex_cfg = executor_config(args.executor, ex_sets)  # bad executor options fail before any work too
    if args.dry_run:
        print(dump_yaml(cfg), end="")
        print(api.run_dir_for(args.experiment, cfg, out))
        return 0
    run_dir = api.run(args.experiment, preset=args.preset, config=args.config, sets=exp_sets, out=out,
                      progress=not args.quiet, executor=ex_cfg)
    from . import runtime

    if runtime.is_main_process():
        _print_claims(run_dir)
        print(run_dir)
    return 0


def _print_claims(run_dir) -> None:
    from .api import load_result
    from .report.html import _fmt

    for c in load_result(run_dir)["claims"]:
        print(f"{c['id']:<42} effect {_fmt(c['effect']):>10}  95% CI [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]  "
              f"seeds {c['n_seeds']}  {c['verdict']}")


# ----------------------------------------------------------------------------- reproduce


def _reproduce_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="quick", help="quick (about 6 minutes on 2 CPU cores with the local executor) or full (larger machine)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: springback-runs)")
    p.add_argument("--only", action="append", default=None, metavar="EXPERIMENT",
                   help="run only these experiments (repeatable; default: all)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="EXPERIMENT:KEY=VALUE",
                   help="override one config value of one experiment, e.g. --set rebound:seeds=[0,1] (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _executor_arg(p)


@command("reproduce", "run every claim of both papers on the embedded default and write report.html")
@_args(_reproduce_args)
def cmd_reproduce(args: argparse.Namespace) -> int:
    from . import api

    path = api.reproduce(preset=args.preset, out=args.out or api.DEFAULT_OUT, experiments=args.only,
                         progress=not args.quiet, sets=args.sets, executor=args.executor)
    print(path)
    return 0


# ----------------------------------------------------------------------------- report


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one or more finished run directories")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write report.html / report.md (default: the first run directory)")


@command("report", "write report.html and report.md for finished run directories")
@_args(_report_args)
def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import load_result
    from .report import write_report

    for d in args.run_dirs:
        load_result(d)  # clear error if unfinished
    print(write_report(args.run_dirs, Path(args.out or args.run_dirs[0])))
    return 0


# ----------------------------------------------------------------------------- elasticity


def _elasticity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", metavar="PATH", help="the aligned model: local directory or hub id")
    p.add_argument("--base", default="", metavar="PATH", help="its base model (for the base level, n_base and KL to base)")
    p.add_argument("--data", default="", metavar="FILE", help="opposing data: .csv/.json/.jsonl/.parquet file or hub dataset")
    p.add_argument("--eval", default="", metavar="FILE", help="held-out evaluation prompts (and reference completions)")
    p.add_argument("--world", default="", metavar="NAME", help="use a synthetic world's prompts, reference sets, labeller and opposing data")
    p.add_argument("--scorer", dest="scorers", action="append", default=[], metavar="SPEC",
                   help="vader, refusal, world, classifier:PATH, reward:PATH, cost:PATH (repeatable; agreement is reported)")
    p.add_argument("--label-map", dest="label_map", default="", metavar="LABEL=VALUE,...",
                   help="classifier label mapping, e.g. POSITIVE=1,NEGATIVE=0")
    _config_args(p, "--set n_opposing=[0,100,200] --set train.lr=1e-5")


@command("elasticity", "benchmark an aligned model: opposing examples to undo its alignment; prints a one-line summary")
@_args(_elasticity_args)
def cmd_elasticity(args: argparse.Namespace) -> int:
    from . import runtime
    from .api import DEFAULT_OUT, elasticity

    result = elasticity(model=args.model, base=args.base, data=args.data, eval=args.eval, world=args.world,
                        scorers=args.scorers, label_map=args.label_map, config=args.config, sets=args.sets,
                        preset=args.preset, out=args.out or DEFAULT_OUT, progress=not args.quiet)
    if runtime.is_main_process():
        print(result["summary"])
        print(result["run_dir"])
    return 0


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="springback", description="Measure how strongly language models resist alignment.")
    parser.add_argument("--version", action="version", version=f"springback {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except SpringbackError as exc:
        print(f"springback: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("springback: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
