"""Command line: one subcommand per public API function, same argument names.

Errors the user can fix print one line (``springback: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
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


@command("list", "experiments, training algorithms, worlds, scorers and size presets, one line each")
@_args(_list_args)
def cmd_list(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS
    from .losses import ALGORITHMS
    from .measure import SCORERS
    from .models import PRESETS, preset_parameters
    from .worlds import WORLDS

    for name, exp in EXPERIMENTS.items():
        print(f"experiment  {name:<12} {exp.description}")
    for name, desc in ALGORITHMS.items():
        print(f"algorithm   {name:<12} {desc}")
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
    p.add_argument("--data", required=True, metavar="FILE",
                   help="texts: .txt (one text per line, split on \\n only), or .csv/.tsv/.json/.jsonl/.parquet with a text "
                        "column found by name (text, review, content, ...)")
    p.add_argument("--arith", action="store_true", help="also arithmetic-code the tokens, decode them back and compare sizes")
    p.add_argument("--max-bytes", dest="max_bytes", type=int, default=None, metavar="N", help="use only the first N bytes of text")
    p.add_argument("--windows", choices=["sliding", "disjoint"], default="sliding",
                   help="long texts: sliding windows (default) or lm-evaluation-harness's disjoint rolling windows")
    p.add_argument("--window", type=int, default=None, metavar="TOKENS",
                   help="window length (default: the model's context; capped at 1024 for sliding, uncapped for disjoint)")
    p.add_argument("--stride", type=int, default=None, metavar="TOKENS", help="sliding: new tokens scored per window after the first (default: window/2)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=32, metavar="N",
                   help="windows per forward pass (the decoder advances N texts per pass)")
    p.add_argument("--eos", action="store_true", help="append and score an EOS after every text (world models are trained with one)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("compress", "compression rate of a model on a text file (bits/token, bits/byte, γ) against gzip, bz2, xz")
@_args(_compress_args)
def cmd_compress(args: argparse.Namespace) -> int:
    import json

    from .api import compress

    r = compress(args.model, args.data, arith=args.arith, max_bytes=args.max_bytes, window=args.window,
                      stride=args.stride, batch_size=args.batch_size, add_eos=args.eos, windows=args.windows)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    m = r["model_rate"]
    print(f"model     {r['model']}  (vocabulary {r['vocab_size']}, {r['windows']} windows of {r['window']} tokens, "
          f"stride {r['stride']})")
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
        a, sec = r["arith"], r["seconds"]
        p = a["precision_bits"]
        print(f"arith     payload {a['payload_bytes']} B = ideal of the coded {p}-bit tables {a['quantised_ideal_bytes']:.1f} B "
              f"+ coder overhead {a['coder_overhead_bytes']:+.2f} B; header {a['header_bytes']} B (token counts, CRC-32)")
        floor = a["n_tokens_beyond_floor"]
        print(f"          coded tables vs the model's ideal {a['ideal_bytes']:.1f} B: {a['quantisation_bytes']:+.2f} B"
              + (f" ({floor} tokens have p < 2^-{p}: the tables' floor codes each in ≤ {p} bits, below −log2 p)" if floor else ""))
        exact = "exact" if a["roundtrip_text_exact"] else (
            f"{a['roundtrip_texts_differ']} of {m['n_texts']} texts differ (the tokenizer normalises them or maps unknown words to <unk>)")
        print(f"          scoring+encoding {sec['encode']:.2f} s, decoding {sec['decode']:.2f} s; round trip: tokens "
              f"{'exact' if a['roundtrip_tokens_exact'] else 'FAILED'}, text {exact}")
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


def _log_with_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-with", dest="log_with", default=None, choices=["tensorboard", "wandb", "mlflow"],
                   help="also log training losses and measurements to an experiment tracker (optional extra: "
                        "pip install 'springback[tensorboard]'); files go under the run directory")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (see `springback list`)")
    _config_args(p, "--set seeds=[0,1] --set align.lr=1e-4")
    _executor_arg(p)
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the run directory, then exit")
    _log_with_arg(p)


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
                      progress=not args.quiet, executor=ex_cfg, log_with=args.log_with)
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
    _log_with_arg(p)
    _executor_arg(p)


@command("reproduce", "run every claim of both papers on the embedded default and write report.html")
@_args(_reproduce_args)
def cmd_reproduce(args: argparse.Namespace) -> int:
    from . import api

    path = api.reproduce(preset=args.preset, out=args.out or api.DEFAULT_OUT, experiments=args.only,
                         progress=not args.quiet, sets=args.sets, executor=args.executor, log_with=args.log_with)
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


# ----------------------------------------------------------------------------- compare


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished runs of one experiment (elasticity or rebound)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write compare.html / .md / .csv / .png (default: compare-HASH beside the first run)")
    p.add_argument("--metric", default="auto", help="score the curves are read in (default: the runs' own, else score_S, score, pi_pos)")
    p.add_argument("--sort-by", dest="sort_by", default="n_half",
                   help="measure to sort by (default n_half: opposing examples to lose half the alignment gain)")
    p.add_argument("--by", action="append", default=[], metavar="KEY",
                   help="also split rows by a curve key, e.g. --by n_aligned for one row per n⁺ of a rebound run")
    p.add_argument("--kl-epsilon", dest="kl_epsilon", type=float, default=None, metavar="NATS",
                   help="KL threshold of 'examples to KL < ε' (default: the runs' kl_epsilon)")


@command("compare", "compare runs of one experiment: one row per model / checkpoint, intervals over seeds, Δ to the best")
@_args(_compare_args)
def cmd_compare(args: argparse.Namespace) -> int:
    from . import api

    result = api.compare(args.run_dirs, out=args.out, metric=args.metric, sort_by=args.sort_by, by=args.by,
                         kl_epsilon=args.kl_epsilon)
    for line in result["summary"]:
        print(line)
    print(result["files"]["html"])
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


# ----------------------------------------------------------------------------- align


def _align_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", metavar="PATH", help="the checkpoint to align: local directory or hub id")
    p.add_argument("--data", default="", metavar="FILE",
                   help="aligned examples: .csv/.json/.jsonl/.parquet in a known format (Alpaca, BeaverTails, HH-RLHF, ...)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to save the aligned checkpoint (a new or empty folder)")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="YAML file with align config values")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one value, e.g. --set train.lr=1e-5 --set n_examples=1000 --set model.chat_template=auto "
                        "--set model.lora_r=16 --set data.format=alpaca (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@command("align", "fine-tune a checkpoint on aligned data and save a Hugging Face checkpoint (for `springback elasticity`)")
@_args(_align_args)
def cmd_align(args: argparse.Namespace) -> int:
    from .api import align

    summary = align(model=args.model, data=args.data, out=args.out, config=args.config, sets=args.sets,
                    progress=not args.quiet)
    print(f"aligned by {summary['algorithm']} on {summary['n_examples']} {summary['item_kind']} (final loss "
          f"{summary['loss']['final']:.4f}; "
          f"{summary['encoding']})")
    print(args.out)
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
