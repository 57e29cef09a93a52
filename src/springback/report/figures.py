"""DataFrames in, matplotlib figures out. No file I/O here except what callers do with the figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def curve_figure(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    *,
    base_level: bool = True,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    hue_label: str = "",
    phase_col: str = "stage",
    ax=None,
):
    """Mean over seeds of ``y`` against ``x``, one line per ``hue`` value, ±1 s.d. shading.

    Rows with ``phase == "base"`` give the dashed base-model level (as the paper's Fig. 4).
    With ``ax`` given, draws into that axes (one panel of a larger figure) and returns its figure.
    """
    own = ax is None
    fig, ax = plt.subplots(figsize=(5.2, 3.6)) if own else (ax.figure, ax)
    curves = df[df[phase_col] != "base"] if phase_col in df.columns else df
    hues = sorted(curves[hue].unique())
    cmap = plt.get_cmap("viridis")
    for i, h in enumerate(hues):
        g = curves[curves[hue] == h].groupby(x)[y]
        mean, std = g.mean(), g.std().fillna(0.0)
        color = cmap(0.15 + 0.7 * i / max(1, len(hues) - 1))
        ax.plot(mean.index, mean.values, marker="o", ms=3, color=color, label=f"{hue_label or hue} = {h}")
        ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=color, alpha=0.15, lw=0)
    if base_level and phase_col in df.columns and (df[phase_col] == "base").any():
        level = df[df[phase_col] == "base"][y].mean()
        ax.axhline(level, ls="--", color="0.3", lw=1, label="base model")
    xs = curves[x]
    if len(xs) and xs.min() >= 0 and xs.max() > 20 * max(1, np.sort(xs.unique())[1] if len(xs.unique()) > 1 else 1):
        ax.set_xscale("symlog", linthresh=max(1, float(np.sort(xs.unique())[1]) if len(xs.unique()) > 1 else 1))
        ax.set_xlim(left=0)  # data amounts are never negative; symlog would otherwise pad below 0
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    if own:
        fig.tight_layout()
    return fig


def panel_curves_figure(
    df: pd.DataFrame,
    panel: str,
    x: str,
    y: str,
    hue: str,
    *,
    panels: list | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    hue_label: str = "",
    panel_label: str = "",
    phase_col: str = "stage",
):
    """One :func:`curve_figure` panel per value of ``panel`` (e.g. one per model size, as the
    paper's §5.3 figures), each with its own dashed base level, sharing the y axis."""
    values = panels if panels is not None else sorted(df[panel].unique())
    fig, axes = plt.subplots(1, len(values), figsize=(3.6 * len(values), 3.4), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], values):
        curve_figure(df[df[panel] == v], x=x, y=y, hue=hue, title=f"{panel_label or panel} = {v}", xlabel=xlabel,
                     ylabel=ylabel if ax is axes[0][0] else "", hue_label=hue_label, phase_col=phase_col, ax=ax)
        if ax is not axes[0][0]:
            ax.set_ylabel("")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _compact(v: float) -> str:
    """1280 -> '1.3k', 451680 -> '452k', 2e12 -> '2T'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def trend_figure(rows: list, measures: dict, *, title: str = "", seed_col: str = "seed", hue: str = "n_pos"):
    """Elasticity measures against an axis: ``rows`` is a list of (row label, DataFrame, x column);
    one panel per (row, measure) showing the mean over seeds with a 95% t-interval, one line per
    ``hue`` value plus the mean over them (black), x on a log scale."""
    from scipy import stats as sps

    names = list(measures)
    fig, axes = plt.subplots(len(rows), len(names), figsize=(3.1 * len(names), 2.7 * len(rows)), squeeze=False)
    cmap = plt.get_cmap("viridis")

    def band(g: pd.DataFrame, x: str, m: str):
        per_seed = g.groupby([x, seed_col])[m].mean().dropna().reset_index()
        stats = per_seed.groupby(x)[m].agg(["mean", "std", "count"])
        half = stats["std"].fillna(0.0) / np.sqrt(stats["count"].clip(lower=1))
        half *= [float(sps.t.ppf(0.975, c - 1)) if c > 1 else 0.0 for c in stats["count"]]
        return stats.index.to_numpy(float), stats["mean"].to_numpy(float), half.to_numpy(float)

    for r, (label, df, x) in enumerate(rows):
        hues = sorted(df[hue].unique()) if hue in df.columns and len(df) else []
        for c, m in enumerate(names):
            ax = axes[r][c]
            if df.empty or m not in df.columns or df[m].isna().all():
                ax.set_axis_off()
                continue
            for i, h in enumerate(hues):
                xs, mean, half = band(df[df[hue] == h], x, m)
                color = cmap(0.15 + 0.7 * i / max(1, len(hues) - 1))
                ax.errorbar(xs, mean, yerr=half, marker="o", ms=3, capsize=2, lw=1, color=color, label=f"{hue} = {h}")
            xs, mean, half = band(df, x, m)
            ax.errorbar(xs, mean, yerr=half, marker="s", ms=4, capsize=2, lw=2, color="black", label="mean")
            if len(xs) and np.all(xs > 0):
                ax.set_xscale("log")
                ax.minorticks_off()  # label the measured points only: log minor labels collide
                ax.set_xticks(xs, [_compact(v) for v in xs])
            ax.set_title(measures[m][0], fontsize=8)
            ax.set_xlabel(f"{label}: {x}", fontsize=8)
            ax.set_ylabel(measures[m][1], fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=6, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def mean_band(ax, df: pd.DataFrame, x: str, y: str, color: str, label: str, seed_col: str = "seed") -> None:
    """Mean over seeds of ``y`` against ``x`` with a 95% t-interval band."""
    from scipy import stats as sps

    stats = df.groupby(x)[y].agg(["mean", "std", "count"])
    half = stats["std"].fillna(0.0) / np.sqrt(stats["count"].clip(lower=1))
    half *= [float(sps.t.ppf(0.975, c - 1)) if c > 1 else 0.0 for c in stats["count"]]
    xs = stats.index.to_numpy(float)
    ax.plot(xs, stats["mean"], marker="o", ms=3, color=color, label=label)
    if (stats["count"] > 1).any():
        ax.fill_between(xs, stats["mean"] - half, stats["mean"] + half, color=color, alpha=0.2, lw=0)


def elasticity_figure(df: pd.DataFrame, metric: str, measures: dict, kl_epsilon: float, title: str):
    """An aligned model's score against opposing examples (mean ± 95% interval over seeds, base
    level dashed, n½ / n_base marked) and, when measured, its KL to the base with the ε line.

    ``df``: the opposing-stage records; ``measures``: name -> {"mean": …} (curve measures)."""
    has_kl = "kl_to_base" in df.columns and df.kl_to_base.notna().any()
    fig, axes = plt.subplots(1, 2 if has_kl else 1, figsize=(9.5 if has_kl else 5.2, 3.6))
    axes = list(np.atleast_1d(axes))
    mean_band(axes[0], df, "n_opposing", metric, "C0", f"aligned model ({df.seed.nunique()} seeds)")
    base = measures.get("score_base", {}).get("mean", float("nan"))
    if np.isfinite(base):
        axes[0].axhline(base, ls="--", color="0.3", lw=1, label="base model")
    for name, style in (("n_half", ":"), ("n_base", "-.")):
        v = measures.get(name, {}).get("mean", float("nan"))
        if np.isfinite(v):
            axes[0].axvline(v, ls=style, color="C3", lw=1, label=f"{name} = {v:.0f}")
    axes[0].set_xlabel("opposing examples")
    axes[0].set_ylabel(metric)
    axes[0].set_title(title, fontsize=10)
    if has_kl:
        mean_band(axes[1], df, "n_opposing", "kl_to_base", "C1", "KL(model ‖ base)")
        axes[1].axhline(kl_epsilon, ls="--", color="0.3", lw=1, label=f"ε = {kl_epsilon:g}")
        axes[1].set_yscale("log")
        axes[1].set_xlabel("opposing examples")
        axes[1].set_ylabel("KL, nats")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def axis_figures(df: pd.DataFrame, cells: pd.DataFrame, ref_budget, ref_size, measures: dict) -> list:
    """The scaling experiment's figures, per world: rebound curves in one panel per size (at the size
    axis's budget) and per budget (at the data axis's size), in S and π⁺, and the elasticity measures
    against each axis (:func:`trend_figure`). ``cells``: :func:`springback.analysis.axes.cell_table`.
    Returns [(file stem, Figure)]."""
    metrics = {"score_S": "alignment score S = log(π⁺/π⁻)", "pi_pos": "exact π⁺ (aligned share of A ∪ N)"}
    out: list = []
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        axes = [("size", sub[sub.budget == ref_budget], "model", f"budget {ref_budget}"),
                ("data", sub[sub["model"] == ref_size], "budget", f"size {ref_size}")]
        for axis, part, panel, where in axes:
            if part.empty or part[panel].nunique() < 1:
                continue
            order = part.groupby(panel).n_params.max() if panel == "model" else part.groupby(panel).budget_n.max()
            panels = list(order.sort_values().index)
            for metric, label in metrics.items():
                if metric not in part.columns or part[metric].isna().all():
                    continue
                out.append((f"scaling_{world}_{axis}_{metric}", panel_curves_figure(
                    part, panel=panel, panels=panels, x="n_opposing", y=metric, hue="n_aligned",
                    title=f"scaling · {world} · {where}", xlabel="opposing examples n⁻", ylabel=label, hue_label="n⁺",
                    panel_label="size" if panel == "model" else "budget")))
        wc = cells[cells.world == world]
        rows = [("size", wc[wc.budget == ref_budget], "n_params"),
                ("data", wc[(wc["model"] == ref_size) & wc.budget_n.notna()], "budget_n")]
        out.append((f"scaling_{world}_summary", trend_figure(
            rows, measures, title=f"scaling · {world}: elasticity measures (mean, 95% CI over seeds)", hue="n_aligned")))
    return out


METRIC_LABELS = {
    "score_S": "alignment score S = log(π⁺/π⁻)",
    "pi_pos": "exact π⁺ (aligned share of A ∪ N)",
    "sampled_rate": "sampled aligned rate (world labeller)",
    "vader": "VADER compound (samples)",
    "kl_to_base": "KL(model ‖ base), nats (sampled sequences)",
    "kl_ref_to_base": "KL(model ‖ base) over A ∪ N, nats (exact)",
    "score": "scorer mean on samples (first of data.scorers)",
}



def rebound_figures(df: pd.DataFrame, name: str, title: str = "") -> list:
    """Rebound curves of every measured metric of :data:`METRIC_LABELS`, one figure per world:
    [(f"{name}_{world}_{metric}", Figure)], hue n⁺, the base level dashed (not for KL)."""
    out = []
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        for metric, label in METRIC_LABELS.items():
            if metric in sub.columns and not sub[metric].isna().all():
                out.append((f"{name}_{world}_{metric}", curve_figure(
                    sub, x="n_opposing", y=metric, hue="n_aligned", base_level=not metric.startswith("kl"),
                    title=f"{title or name} · {world}", xlabel="opposing examples n⁻", ylabel=label, hue_label="n⁺")))
    return out
