"""Figures of the compression theorem: simulated (theory) and measured on trained models (compression).

Each function takes DataFrames and returns a matplotlib Figure; callers save and close it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .figures import plt


def hooke_figure(points: pd.DataFrame, title: str, xlabel: str, ylabel: str = "|Δγ| (change in normalised rate)"):
    """Log-log |Δγ_i| against |D_i|: one marker pair (D_a, D_p) per k joined by a line, slope −1 guides."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    cmap = plt.get_cmap("viridis")
    ks = sorted(points.k.unique())
    for i, k in enumerate(ks):
        g = points[points.k == k].sort_values("size")
        color = cmap(0.1 + 0.8 * i / max(1, len(ks) - 1))
        ax.plot(g["size"], g["delta"], "-", color=color, lw=1)
        for _, r in g.iterrows():
            ax.plot(r["size"], r["delta"], "o" if r["dataset"] == "D_a" else "s", color=color, ms=6)
        # Hooke guide through the D_a point: |Δγ| ∝ 1/|D|
        a = g[g.dataset == "D_a"]
        if len(a):
            xs = np.array([g["size"].min(), g["size"].max()])
            ax.plot(xs, float(a["delta"].iloc[0]) * float(a["size"].iloc[0]) / xs, ":", color="0.5", lw=0.8)
        ax.plot([], [], "-", color=color, label=f"k = {k:g}")
    ax.plot([], [], "o", color="0.3", label="D_a (alignment)")
    ax.plot([], [], "s", color="0.3", label="D_p (pre-training)")
    ax.plot([], [], ":", color="0.5", label="slope −1 (Hooke)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def theory_ratio_figure(sweep: pd.DataFrame):
    """|dγ_a/dl| / |dγ_p/dl| against k at three l values (mean and range over seeds), with ratio = k."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ls = sorted(sweep.l.unique())
    pick = sorted({ls[0], ls[len(ls) // 2], ls[-1]})
    cmap = plt.get_cmap("plasma")
    for i, l in enumerate(pick):
        g = sweep[sweep.l == l].groupby("k").ratio
        color = cmap(0.1 + 0.7 * i / max(1, len(pick) - 1))
        ax.plot(g.mean().index, g.mean().values, "o-", color=color, ms=4, label=f"l = {l:g}")
        ax.fill_between(g.mean().index, g.min().values, g.max().values, color=color, alpha=0.15, lw=0)
    ks = np.array(sorted(sweep.k.unique()))
    ax.plot(ks, ks, "--", color="0.3", lw=1, label="ratio = k (closed form)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k = |D_p| / |D_a|")
    ax.set_ylabel("|dγ_a/dl| / |dγ_p/dl|")
    ax.set_title("theory · derivative ratio against k (simulator)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def theory_robustness_figure(rob: pd.DataFrame, l_max: float):
    """Share of grid points with opposite signs against χ²(p_t ‖ p_p), coloured by D_t's rank noise."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.scatter(rob.chi2_t_p, rob.share_opposite_signs, c=rob.t_rank_noise, cmap="viridis", s=18)
    ax.axvline(1.0 / l_max, ls="--", color="0.3", lw=1, label=f"χ² = 1/l_max = {1 / l_max:g}")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(left=0.0)
    ax.set_xlabel("χ²(p_t ‖ p_p): perturbation's distance from pre-training data")
    ax.set_ylabel("share of (k, l) with opposite signs")
    ax.set_title("theory · when does the sign of dγ_p/dl hold?", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def gamma_panels_figure(opp: pd.DataFrame, world: str):
    """γ on each held-out set against l, one line per k (mean ± s.d. over seeds). ``opp`` has column l."""
    panels = [("gamma_a", "γ on held-out D_a (alignment)"), ("gamma_p", "γ on held-out D_p (pre-training)")]
    if "gamma_p_task" in opp.columns:
        panels += [("gamma_p_task", "γ on D_p's task examples"), ("gamma_p_general", "γ on D_p's general sentences")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
    cmap = plt.get_cmap("viridis")
    ks = sorted(opp.k.unique())
    for ax, (name, label) in zip(axes, panels):
        for i, k in enumerate(ks):
            g = opp[opp.k == k].groupby("l")[name]
            color = cmap(0.1 + 0.8 * i / max(1, len(ks) - 1))
            ax.plot(g.mean().index, g.mean().values, "o-", ms=3, color=color, label=f"k = {k:g}")
            ax.fill_between(g.mean().index, (g.mean() - g.std().fillna(0)).values,
                            (g.mean() + g.std().fillna(0)).values, color=color, alpha=0.15, lw=0)
        ax.set_xlabel("l = |D_t| / |D_a|")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"compression · {world}: γ while fine-tuning on opposing data", fontsize=10)
    fig.tight_layout()
    return fig


def ratio_vs_k_figure(tab: pd.DataFrame):
    """−(dγ_a/dl)/(dγ_p/dl) against k on trained models (cells where positive), with the theorem's slope 1."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for world, g in tab.groupby("world"):
        ok = g[np.isfinite(g.ratio) & (g.ratio > 0)]
        ax.plot(ok.k, ok.ratio, "o", alpha=0.5, ms=4, label=f"{world}: seeds")
        med = ok.groupby("k").ratio.median()
        ax.plot(med.index, med.values, "-", lw=1.5, label=f"{world}: median")
    ks = np.array(sorted(tab.k.unique()))
    if len(ks):
        ax.plot(ks, ks, "--", color="0.3", lw=1, label="theorem: ratio ∝ k (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k = |D_p| / |D_a|")
    ax.set_ylabel("−(dγ_a/dl) / (dγ_p/dl)")
    ax.set_title("compression · derivative ratio against k (trained models)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
