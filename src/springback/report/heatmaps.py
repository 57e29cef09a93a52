"""Heatmaps: the resistance experiment's forward − inverse cells (P1 Table 1) and its loss
curves, and rebound grids over n⁺ × n⁻ (P1 Fig. 7, one panel per alignment method)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from .figures import plt


def forward_inverse_heatmap(cells: pd.DataFrame, models: list[str], label: str):
    """One panel per world, models × checkpoint pairs, coloured by forward − inverse (> 0 = inverse
    easier) with the number of seeds holding. ``cells``: rows of
    :func:`springback.analysis.paired.cell_table`."""
    worlds = sorted(cells.world.unique())
    pairs = sorted(cells.pair.unique())
    vmax = float(np.nanmax(np.abs(cells["diff"]))) or 1e-9
    fig, axes = plt.subplots(1, len(worlds), figsize=(3.0 * len(worlds) + 0.8, 0.75 * len(models) + 1.9), squeeze=False)
    im = None
    for n_ax, (ax, world) in enumerate(zip(axes[0], worlds)):
        grid = np.full((len(models), len(pairs)), np.nan)
        for _, c in cells[cells.world == world].iterrows():
            r, k = models.index(c["model"]), pairs.index(c["pair"])
            grid[r, k] = c["diff"]
            ax.text(k, r, f"{c['diff']:+.3f}\n{c['n_seeds_holding']}/{c['n_seeds']}", ha="center", va="center",
                    fontsize=7, color="white" if abs(c["diff"]) > 0.6 * vmax else "black")
        im = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto")
        ax.set_xticks(range(len(pairs)), [f"θ{p.replace('-', '↔θ')}" for p in pairs], fontsize=8)
        ax.set_yticks(range(len(models)), models if n_ax == 0 else [""] * len(models), fontsize=8)
        ax.set_title(world, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="forward − inverse")
    fig.suptitle(f"resistance · {label}: forward − inverse (> 0 = inverse easier; seeds holding)", fontsize=9, y=1.04)
    return fig


def loss_curves_figure(ft: pd.DataFrame, model: str):
    """Training-loss curves (mean over seeds) of every pair and direction, one panel per world."""
    worlds = sorted(ft.world.unique())
    fig, axes = plt.subplots(1, len(worlds), figsize=(3.6 * len(worlds), 3.0), squeeze=False)
    for ax, world in zip(axes[0], worlds):
        sub = ft[(ft.world == world) & (ft["model"] == model)]
        pairs = sorted(sub.pair.unique())
        for (pair, direction), g in sub.groupby(["pair", "direction"]):
            curves = np.array([np.asarray(c, float) for c in g.curve_loss])
            x = np.asarray(g.curve_n_examples.iloc[0], float)
            ax.plot(x, curves.mean(0), ls="-" if direction == "forward" else "--", lw=1.2,
                    color=plt.get_cmap("tab10")(pairs.index(pair)), label=f"{pair} {direction}")
        ax.set_title(f"{world} · {model}", fontsize=9)
        ax.set_xlabel("examples seen")
        ax.set_ylabel("training loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


# The resistance experiment's heatmaps: records column -> its label.
HEATMAPS = {
    "mean_loss": "mean training loss",
    "excess_mean_loss": "excess loss (− writer's own loss)",
    "kl_change": "KL change toward target (nats)",
}


def resistance_figures(df: pd.DataFrame, sizes: list[str]) -> list:
    """Forward − inverse heatmaps of :data:`HEATMAPS` (models ordered as ``sizes``, then the rest) and
    the loss curves of the last model, as [(file stem, Figure)]."""
    from ..analysis.paired import cell_table, paired

    out = []
    for metric, label in HEATMAPS.items():
        p = paired(df, metric)
        if not len(p):
            continue
        tab = pd.DataFrame(cell_table(p))
        present = set(tab["model"])
        models = [s for s in sizes if s in present] + [s for s in sorted(present) if s not in sizes]
        out.append((f"resistance_heatmap_{metric}", forward_inverse_heatmap(tab, models, label)))
    ft = df[df.stage == "finetune"] if "stage" in df.columns else df.iloc[0:0]
    if len(ft) and "curve_loss" in ft.columns:
        out.append(("resistance_loss_curves", loss_curves_figure(ft, ft["model"].iloc[-1])))
    return out


def rebound_grid_heatmap(df: pd.DataFrame, value: str, panel: str, *, panels: list | None = None, label: str = "",
                         title: str = "", vmin: float | None = None, vmax: float | None = None,
                         base_level: bool = True):
    """P1 Fig. 7's layout: one panel per value of ``panel`` (e.g. the alignment method), rows n⁺
    (most alignment at the top), columns n⁻, each cell the mean over seeds of ``value`` in the
    opposing-stage rows, written in the cell. With ``base_level``, the colour scale is centred on
    the base rows' mean (white = back at the base model's level, as the dashed line of Fig. 4)."""
    opp = df[df.stage == "opposing"]
    values = panels if panels is not None else sorted(opp[panel].dropna().unique())
    pos = sorted(opp.n_aligned.unique(), reverse=True)
    neg = sorted(opp.n_opposing.unique())
    grids = {}
    for v in values:
        means = opp[opp[panel] == v].groupby(["n_aligned", "n_opposing"])[value].mean()
        grids[v] = np.array([[means.get((p, n), np.nan) for n in neg] for p in pos], dtype=float)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()]) if grids else np.array([])
    lo = vmin if vmin is not None else (float(finite.min()) if len(finite) else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if len(finite) else 1.0)
    base = df[df.stage == "base"][value].mean() if base_level and (df.stage == "base").any() else np.nan
    if np.isfinite(base) and lo < base < hi:
        norm, cmap = TwoSlopeNorm(float(base), lo, hi), "RdBu"
    else:
        norm, cmap = None, "viridis"
    fig, axes = plt.subplots(1, max(1, len(values)), figsize=(0.4 * len(neg) * len(values) + 1.2, 0.45 * len(pos) + 1.6),
                             squeeze=False, layout="constrained")
    im = None
    for k, (ax, v) in enumerate(zip(axes[0], values)):
        grid = grids[v]
        im = ax.imshow(grid, cmap=cmap, norm=norm, vmin=None if norm else lo, vmax=None if norm else hi, aspect="auto")
        for r in range(len(pos)):
            for c in range(len(neg)):
                if np.isfinite(grid[r, c]):
                    shade = float(norm(grid[r, c])) if norm is not None else (grid[r, c] - lo) / ((hi - lo) or 1.0)
                    ax.text(c, r, f"{grid[r, c]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if shade < 0.15 or shade > 0.85 else "black")  # legible on dark cells
        ax.set_xticks(range(len(neg)), [f"{n:g}" for n in neg], fontsize=7, rotation=90)
        ax.set_yticks(range(len(pos)), [str(int(p)) for p in pos] if k == 0 else [""] * len(pos), fontsize=7)
        ax.set_xlabel("n⁻", fontsize=8)
        if k == 0:
            ax.set_ylabel("n⁺", fontsize=8)
        ax.set_title(str(v), fontsize=9)
    if im is not None:
        extra = f" (white = base model {base:.2f})" if norm is not None else ""
        bar = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.9, fraction=0.02, pad=0.01)
        bar.set_label((label or value) + extra, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
