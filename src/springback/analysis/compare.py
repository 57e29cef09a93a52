"""Compare runs of one experiment: one row per model / checkpoint / algorithm.

Pure functions over the runs' records and configs (the caller reads the files). What a row is:

* **Row = one run** (or one run × the values of ``by``, e.g. ``by=("n_aligned",)``), labelled by
  what distinguishes the runs: the records' ``model`` column when it names each run uniquely,
  else the config keys whose values differ between the runs, else the run directory's name.
* **Curves.** A run holds opposing curves s(n⁻) (the ``opposing`` stage), each measured against
  its base row (``stage == "base"``, same world and seed). ``elasticity``: one curve per seed
  (and world). ``rebound``: one curve per (world, seed, n⁺). The per-curve measures are
  :func:`springback.analysis.curves.curve_table`'s; the alignment gain is score_aligned − score_base.
* **One value per seed.** A row's value for a seed is the mean over that seed's curves (for
  rebound: over its n⁺ grid and worlds). It is defined only when every one of those curves
  defines the measure (a curve that never crosses its level has no n½), so two rows never
  average different sets of curves. ``by=("n_aligned",)`` gives one row per n⁺ instead.
* **Mean and 95% interval over seeds** (Student t, :func:`~springback.analysis.stats.t_interval`).
* **Sort** by ``sort_by`` (default n½, the opposing examples that undo half the alignment gain:
  P1's elasticity in one number, normalised by each row's own gain), in the direction where a
  larger value means alignment that survives more opposing data (:data:`ROBUST_DIRECTION`);
  rows whose sort value is undefined go last. The first row is the **best** row.
* **Difference to the best row**, per measure: paired over seeds when the two rows share at
  least two seeds with defined values (seed s draws the same opposing stream in the same order
  in every run, so the data-order part of the seed-to-seed spread is common to both rows and
  pairing removes it; a paired interval is valid whatever the correlation, since the per-seed
  differences are independent across seeds), else Welch's unpaired interval.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import SpringbackError
from .curves import MEASURES, curve_table
from .stats import CONFIDENCE, t_interval

# Experiments whose records compare: within one run, the keys that identify one opposing curve.
CURVE_KEYS: dict[str, tuple[str, ...]] = {
    "elasticity": ("world", "seed"),  # one aligned model per run: one curve per seed (and world)
    "rebound": ("world", "seed", "n_aligned"),  # one curve per n⁺
}
BASE_KEYS = ("world", "seed")  # a curve's base row: same world and seed (stage "base")
# What one row of the table summarises, per experiment (printed with the table).
ROW_MEANING: dict[str, str] = {
    "elasticity": "one aligned model (one run); per seed, its opposing curve",
    "rebound": "one run; per seed, the mean over its n⁺ curves (and worlds); --by n_aligned splits by n⁺",
}

GAIN = "gain"
# Every measure of the table: the alignment gain, then the per-curve measures.
ALL_MEASURES: dict[str, tuple[str, str]] = {
    GAIN: ("score", "alignment gain: score of the aligned model − score of its base"), **MEASURES}
# The measures the table and figure show (the CSV has all of ALL_MEASURES).
SHOWN = ("gain", "n_half", "initial_fall_per_100", "late_fall_per_100", "n_kl_below_eps")
SHORT_NAMES = {"gain": "gain", "n_half": "n½", "initial_fall_per_100": "fall before base /100",
               "late_fall_per_100": "fall after base /100", "n_kl_below_eps": "n to KL<ε", "n_base": "n_base",
               "score_aligned": "aligned score", "score_base": "base score", "score_final": "final score",
               "fall_rate_ratio": "fall ratio", "area_above_base": "area above base", "kl_aligned": "KL aligned"}
# +1: a larger value means alignment that survives more opposing data; −1: a smaller one does.
ROBUST_DIRECTION: dict[str, int] = {
    "gain": 1, "n_half": 1, "n_base": 1, "n_kl_below_eps": 1, "area_above_base": 1, "score_aligned": 1,
    "score_final": 1, "kl_aligned": 1, "score_base": 1,
    "initial_fall_per_100": -1, "late_fall_per_100": -1, "fall_rate_ratio": -1,
}
AUTO_METRICS = ("score_S", "score", "pi_pos", "sampled_rate")  # "auto": the first every run measured


@dataclasses.dataclass
class RunRecords:
    """One run as compare needs it: its directory name, records, resolved config and result."""

    name: str
    records: pd.DataFrame
    config: dict[str, Any]
    result: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Comparison:
    """The comparison of several runs (see the module docstring)."""

    experiment: str
    metric: str
    kl_metric: str
    kl_epsilon: float
    sort_by: str
    descending: bool
    by: tuple[str, ...]
    labels: dict[str, str]  # run name -> row label
    table: pd.DataFrame  # one row per (label, *by), sorted; columns: see compare_table
    seeds: pd.DataFrame  # one row per (label, *by, seed): the per-seed values
    curves: pd.DataFrame  # one row per curve: run, label, curve keys, measures
    mean_curves: pd.DataFrame  # label, *by, n_opposing, mean, ci_low, ci_high, n_seeds (of the metric)
    row_meaning: str
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists of row dicts), for the API's return value."""
        return {"experiment": self.experiment, "metric": self.metric, "kl_metric": self.kl_metric,
                "kl_epsilon": self.kl_epsilon, "sort_by": self.sort_by, "descending": self.descending,
                "by": list(self.by), "labels": dict(self.labels), "row_meaning": self.row_meaning,
                "rows": self.table.to_dict("records"), "notes": list(self.notes)}


# ----------------------------------------------------------------------------- labels


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _short(value: Any, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else "…" + text[-(width - 1):]


def run_labels(configs: Sequence[Mapping[str, Any]], models: Sequence[Sequence[str]], names: Sequence[str]) -> list[str]:
    """A distinct label per run: its model when every run has one model and they all differ,
    else the config values that differ between runs (``key=value, …``), else the run's name."""
    if all(len(m) == 1 for m in models) and len({m[0] for m in models}) == len(models):
        return [str(m[0]) for m in models]
    flat = [flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    if differ:
        labels = [", ".join(f"{k}={_short(f.get(k))}" for k in differ) for f in flat]
        if len(set(labels)) == len(labels):
            return labels
    if len(set(names)) == len(names):
        return list(names)
    return [f"{n} ({i + 1})" for i, n in enumerate(names)]


# ----------------------------------------------------------------------------- choices shared by all runs


def _common(values: Sequence[Any], what: str, fix: str) -> Any:
    distinct = sorted({repr(v) for v in values})
    if len(distinct) > 1:
        raise SpringbackError(f"the runs use different {what} ({', '.join(distinct)}): {fix}")
    return values[0]


def choose_metric(runs: Sequence[RunRecords], metric: str = "auto") -> str:
    """The score the curves are read in: ``metric`` if every run measured it; with ``"auto"``,
    the runs' own analysis metric (result.json ``metric``, e.g. elasticity's) when they all name
    one, else the first of :data:`AUTO_METRICS` that every run measured on its opposing rows."""
    def measured(r: RunRecords, m: str) -> bool:
        opp = r.records[r.records.stage == "opposing"] if "stage" in r.records.columns else r.records
        return m in opp.columns and bool(opp[m].notna().any())

    if metric != "auto":
        missing = [r.name for r in runs if not measured(r, metric)]
        if missing:
            raise SpringbackError(f"metric '{metric}' was not measured in {', '.join(missing)}")
        return metric
    own = [r.result.get("metric") for r in runs]
    if all(own):
        return _common(own, "metrics", "pass --metric")
    for m in AUTO_METRICS:
        if all(measured(r, m) for r in runs):
            return m
    raise SpringbackError(f"no score measured in every run (looked for {', '.join(AUTO_METRICS)}): pass --metric")


def kl_settings(runs: Sequence[RunRecords], kl_epsilon: float | None = None) -> tuple[str, float]:
    """(KL column, ε) of the "examples to KL < ε" measure: the runs' ``kl_metric`` (default
    ``kl_to_base``) and ``kl_epsilon`` (elasticity 0.01 after P1 Table 3; rebound 0.1), which
    must agree across runs unless ``kl_epsilon`` overrides it."""
    kl_metric = _common([str(r.config.get("kl_metric", "kl_to_base")) for r in runs], "KL measures (kl_metric)",
                        "compare runs that measure KL the same way")
    if kl_epsilon is None:
        eps = [r.config.get("kl_epsilon") for r in runs]
        if any(e is None for e in eps):
            raise SpringbackError("a run's config has no kl_epsilon: pass --kl-epsilon")
        kl_epsilon = float(_common([float(e) for e in eps], "KL thresholds (kl_epsilon)", "pass --kl-epsilon"))
    if not (math.isfinite(kl_epsilon) and kl_epsilon > 0):
        raise SpringbackError(f"kl_epsilon must be a number > 0, got {kl_epsilon}")
    return kl_metric, float(kl_epsilon)


# ----------------------------------------------------------------------------- curves and seeds


def _with_base_score(df: pd.DataFrame, metric: str, base_score: Any) -> pd.DataFrame:
    """An elasticity run without a base model gives its base level as ``base_score``: add it
    as one base row per (world, seed) so every run goes through the same curve_table."""
    if (df.stage == "base").any() or base_score is None:
        return df
    opp = df[df.stage == "opposing"]
    rows = [{"stage": "base", "world": w, "seed": s, metric: float(base_score)}
            for (w, s), _ in opp.groupby(list(BASE_KEYS))]
    return pd.concat([df, pd.DataFrame(rows)], ignore_index=True)


def curves(run: RunRecords, experiment: str, metric: str, kl_metric: str, kl_epsilon: float) -> pd.DataFrame:
    """One row per opposing curve of one run: its keys, :data:`MEASURES` and the gain."""
    df = _with_base_score(run.records, metric, run.config.get("base_score"))
    tab = curve_table(df, list(CURVE_KEYS[experiment]), list(BASE_KEYS), metric, kl_metric=kl_metric,
                      kl_epsilon=kl_epsilon)
    tab.insert(0, "run", run.name)
    tab[GAIN] = tab["score_aligned"] - tab["score_base"]
    return tab


def _strict_mean(values: pd.Series) -> float:
    """Mean of a seed's curves, NaN unless every curve defines the value (module docstring)."""
    x = values.to_numpy(float)
    return float(x.mean()) if len(x) and np.isfinite(x).all() else float("nan")


def per_seed(curve_tab: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per (label, *by, seed): each measure's mean over that seed's curves."""
    keys = ["label", *by, "seed"]
    out = curve_tab.groupby(keys, sort=True).agg(
        **{m: (m, _strict_mean) for m in ALL_MEASURES}, n_curves=("run", "size"))
    return out.reset_index()


# ----------------------------------------------------------------------------- intervals of differences


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean(a) − mean(b), low, high): Welch's t-interval for a difference of means of two
    independent samples (Welch–Satterthwaite degrees of freedom). NaN bounds when either
    sample has < 2 finite values or both have zero spread."""
    x = np.asarray([v for v in a if math.isfinite(v)], float)
    y = np.asarray([v for v in b if math.isfinite(v)], float)
    if len(x) == 0 or len(y) == 0:
        return float("nan"), float("nan"), float("nan")
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return diff, float("nan"), float("nan")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se2 = vx + vy
    if not se2 > 0:
        return diff, float("nan"), float("nan")
    dof = se2**2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, dof)) * math.sqrt(se2)
    return diff, diff - half, diff + half


def difference(row: Mapping[int, float], best: Mapping[int, float]) -> tuple[float, float, float, int, bool]:
    """(mean, low, high, n_seeds, paired) of row − best from per-seed values (seed -> value):
    paired t-interval over the seeds both define when there are ≥ 2, else Welch's interval."""
    ok_r = {s: v for s, v in row.items() if math.isfinite(v)}
    ok_b = {s: v for s, v in best.items() if math.isfinite(v)}
    common = sorted(set(ok_r) & set(ok_b))
    if len(common) >= 2:
        mean, lo, hi = t_interval([ok_r[s] - ok_b[s] for s in common])
        return mean, lo, hi, len(common), True
    mean, lo, hi = welch_interval(list(ok_r.values()), list(ok_b.values()))
    return mean, lo, hi, min(len(ok_r), len(ok_b)), False


# ----------------------------------------------------------------------------- the table


def _sort_key(value: float, descending: bool) -> float:
    if not math.isfinite(value):
        return math.inf  # undefined sort values go last
    return -value if descending else value


def compare_table(seeds: pd.DataFrame, by: Sequence[str], sort_by: str, descending: bool) -> pd.DataFrame:
    """One row per (label, *by): for every measure m, ``m`` (mean over seeds), ``m_ci_low``,
    ``m_ci_high``, ``m_n`` (seeds defining it), and its difference to the best row of the same
    ``by`` group: ``m_diff``, ``m_diff_ci_low``, ``m_diff_ci_high``, ``m_diff_n``, ``m_diff_paired``.
    Plus ``rank`` (1 = best), ``best``, ``n_seeds`` and ``n_curves`` (per seed)."""
    rows, values = [], {}
    for key, g in seeds.groupby(["label", *by], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(["label", *by], key))
        row["n_seeds"] = int(g.seed.nunique())
        row["n_curves"] = int(g.n_curves.max())
        for m in ALL_MEASURES:
            mean, lo, hi = t_interval(g[m].tolist())
            row.update({m: mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_n": int(np.isfinite(g[m].to_numpy(float)).sum())})
        rows.append(row)
        values[key] = {m: dict(zip(g.seed.astype(int), g[m].astype(float))) for m in ALL_MEASURES}
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_key"] = [_sort_key(v, descending) for v in table[sort_by]]
    table = table.sort_values([*by, "_key", "label"], kind="stable").drop(columns="_key").reset_index(drop=True)
    out = []
    groups = table.groupby(list(by), sort=False) if by else [((), table)]
    for _, g in groups:
        best = g.iloc[0] if math.isfinite(g.iloc[0][sort_by]) else None
        best_key = tuple(best[k] for k in ["label", *by]) if best is not None else None
        for rank, (_, r) in enumerate(g.iterrows(), start=1):
            r = r.to_dict()
            key = tuple(r[k] for k in ["label", *by])
            r["rank"], r["best"] = rank, key == best_key
            for m in ALL_MEASURES:
                if best_key is None:
                    d = (float("nan"),) * 3 + (0, False)
                elif r["best"]:
                    d = (0.0, float("nan"), float("nan"), r[f"{m}_n"], True)
                else:
                    d = difference(values[key][m], values[best_key][m])
                r.update({f"{m}_diff": d[0], f"{m}_diff_ci_low": d[1], f"{m}_diff_ci_high": d[2],
                          f"{m}_diff_n": int(d[3]), f"{m}_diff_paired": bool(d[4])})
            out.append(r)
    first = ["rank", "label", *by, "best", "n_seeds", "n_curves"]
    frame = pd.DataFrame(out)
    return frame[first + [c for c in frame.columns if c not in first]]


def mean_curves(runs: Sequence[RunRecords], labels: Mapping[str, str], metric: str, by: Sequence[str]) -> pd.DataFrame:
    """The metric against n⁻ per row, aggregated as the table is: per seed the mean over the
    row's curves at each n⁻, then mean and 95% t-interval over seeds."""
    parts = []
    for r in runs:
        opp = r.records[r.records.stage == "opposing"]
        if opp.empty:
            continue
        g = opp.groupby([*by, "seed", "n_opposing"], sort=True)[metric].mean().reset_index()
        for key, h in g.groupby([*by, "n_opposing"], sort=True):
            key = key if isinstance(key, tuple) else (key,)
            mean, lo, hi = t_interval(h[metric].tolist())
            parts.append({"label": labels[r.name], **dict(zip([*by, "n_opposing"], key)), "mean": mean,
                          "ci_low": lo, "ci_high": hi, "n_seeds": int(h[metric].notna().sum())})
    return pd.DataFrame(parts)


def compare_runs(
    runs: Sequence[RunRecords],
    metric: str = "auto",
    sort_by: str = "n_half",
    by: Sequence[str] = (),
    kl_epsilon: float | None = None,
    descending: bool | None = None,
) -> Comparison:
    """Compare runs of one experiment (module docstring). ``descending`` defaults to the
    direction of :data:`ROBUST_DIRECTION` (larger first for n½)."""
    if not runs:
        raise SpringbackError("give at least one run directory to compare")
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        raise SpringbackError("a run directory is given twice")
    exps = sorted({str(e) for r in runs for e in (r.records.experiment.unique() if "experiment" in r.records.columns else [])})
    empty = [r.name for r in runs if r.records.empty or "stage" not in r.records.columns]
    if empty:
        raise SpringbackError(f"no finished cells in {', '.join(empty)}")
    if len(exps) != 1:
        raise SpringbackError(f"compare runs of one experiment (got {', '.join(exps) or 'none'})")
    experiment = exps[0]
    if experiment not in CURVE_KEYS:
        raise SpringbackError(f"compare reads opposing curves of {', '.join(CURVE_KEYS)} runs, not '{experiment}'")
    if sort_by not in ALL_MEASURES:
        raise SpringbackError(f"unknown measure '{sort_by}' to sort by (choose from: {', '.join(ALL_MEASURES)})")
    by = tuple(by)
    allowed = [k for k in CURVE_KEYS[experiment] if k != "seed"]
    bad = [k for k in by if k not in allowed]
    if bad:
        raise SpringbackError(f"cannot split {experiment} rows by {', '.join(bad)} (choose from: {', '.join(allowed)})")
    metric = choose_metric(runs, metric)
    kl_metric, eps = kl_settings(runs, kl_epsilon)
    models = [sorted(set(r.records.loc[r.records.stage == "opposing", "model"].dropna().astype(str)))
              if "model" in r.records.columns else [] for r in runs]
    labels = dict(zip(names, run_labels([r.config for r in runs], models, names)))
    tab = pd.concat([curves(r, experiment, metric, kl_metric, eps) for r in runs], ignore_index=True)
    if tab.empty:
        raise SpringbackError("the runs have no opposing curves to compare")
    tab.insert(1, "label", tab.run.map(labels))
    seed_tab = per_seed(tab, by)
    if descending is None:
        descending = ROBUST_DIRECTION.get(sort_by, 1) > 0
    table = compare_table(seed_tab, by, sort_by, descending)
    table.insert(2, "run", table.label.map({v: k for k, v in labels.items()}))
    notes = []
    if experiment == "rebound" and "n_aligned" not in by:
        grids = {labels[n]: sorted(int(x) for x in g.n_aligned.unique()) for n, g in tab.groupby("run")}
        if len({tuple(v) for v in grids.values()}) > 1:
            notes.append(f"the rows average different n⁺ grids ({grids}); compare with --by n_aligned")
    no_base = [labels[n] for n, g in tab.groupby("run") if g.score_base.isna().all()]
    if no_base:
        notes.append(f"no base level in {', '.join(no_base)} (no base model or base_score): gain, n½, n_base and "
                     "the fall rates are undefined there")
    seeds = {labels[n]: sorted(int(s) for s in g.seed.unique()) for n, g in tab.groupby("run")}
    if len({tuple(v) for v in seeds.values()}) > 1:
        notes.append(f"the runs have different seeds ({seeds}): differences are paired over the shared seeds only")
    return Comparison(experiment=experiment, metric=metric, kl_metric=kl_metric, kl_epsilon=eps, sort_by=sort_by,
                      descending=bool(descending), by=by, labels=labels, table=table, seeds=seed_tab, curves=tab,
                      mean_curves=mean_curves(runs, labels, metric, by), row_meaning=ROW_MEANING[experiment],
                      notes=notes)
