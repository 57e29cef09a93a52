"""The report at a glance: every claim's effect and interval on one common scale.

Claims are in different units (log-odds per 100 examples, Pearson r, nats, …). To put them on
one axis each claim is shifted by its null and divided by a scale of its own:

* by its equivalence band δ when it has one: x = (effect − null) / δ, so ±1 is the band —
  an interval wholly inside (−1, 1) is ``absent``, one wholly right of 0 ``reproduced``;
* otherwise by its interval's half-width h = (high − low) / 2: x = (effect − null) / h, a
  t-like ratio — the interval spans x ± 1 (exactly for a symmetric interval), so it excludes
  the null exactly when |x| > 1.

Positive x is always the paper's side (a claim is ``reproduced`` when its interval lies wholly
above the null). The axis is linear inside ±1 and logarithmic beyond, so both a 0.3δ and a 300δ
effect stay readable. Claims are grouped by paper (P1, P2, ours) and experiment, and coloured
by verdict.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from .figures import plt

VERDICT_COLORS = {"reproduced": "#2a9d55", "not_reproduced": "#d1495b", "absent": "#4a78b5", "inconclusive": "#e0a526"}
PAPERS = ("P1", "P2", "ours")
BY_DELTA, BY_HALF_WIDTH, NO_SCALE = "delta", "half_width", "none"


def paper_of(claim: Mapping[str, Any]) -> str:
    """"P1" or "P2": the first paper the claim's ``paper`` text cites; "ours" when neither."""
    m = re.search(r"\bP([12])\b", str(claim.get("paper", "")))
    return f"P{m.group(1)}" if m else "ours"


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and x is not None and math.isfinite(float(x)) else float("nan")


def claim_position(claim: Mapping[str, Any]) -> tuple[float, float, float, str]:
    """(x, low, high, basis) of a claim on the common scale (module docstring); basis is
    ``"delta"``, ``"half_width"`` or ``"none"`` (no δ and no finite interval: NaN position)."""
    null = _num((claim.get("details") or {}).get("null", 0.0))
    null = 0.0 if math.isnan(null) else null
    effect, lo, hi = _num(claim.get("effect")), _num(claim.get("ci_low")), _num(claim.get("ci_high"))
    delta = _num(claim.get("delta"))
    if math.isfinite(delta) and delta > 0:
        scale, basis = delta, BY_DELTA
    elif math.isfinite(lo) and math.isfinite(hi) and hi > lo:
        scale, basis = (hi - lo) / 2, BY_HALF_WIDTH
    else:
        return float("nan"), float("nan"), float("nan"), NO_SCALE
    return (effect - null) / scale, (lo - null) / scale, (hi - null) / scale, basis


def ordered(claims: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(paper, experiment, claim) grouped by paper (P1, P2, ours), then experiment in order of
    appearance, claims in their own order."""
    exp_order = {e: i for i, e in enumerate(dict.fromkeys(e for e, _ in claims))}
    items = [(paper_of(c), e, i, c) for i, (e, c) in enumerate(claims)]
    items.sort(key=lambda t: (PAPERS.index(t[0]), exp_order[t[1]], t[2]))
    return [(p, e, c) for p, e, _, c in items]


def summary_figure(claims: Sequence[tuple[str, Mapping[str, Any]]]):
    """One row per claim (``claims``: (experiment, claim dict) pairs as in ``result.json``):
    effect and 95% interval on the common scale, coloured by verdict; ○ = scaled by δ,
    □ = by the interval's half-width. Returns None when there are no claims."""
    if not claims:
        return None
    items = ordered(claims)
    # Rows top to bottom, with a header row before each new (paper, experiment) group.
    layout: list[tuple[str, Any]] = []
    group = None
    for paper, exp, c in items:
        if (paper, exp) != group:
            group = (paper, exp)
            layout.append(("header", f"{paper} · {exp}"))
        layout.append(("claim", c))
    n = len(layout)
    fig, ax = plt.subplots(figsize=(8.6, 0.9 + 0.26 * n))
    lim = 1.0
    for row, (kind, item) in enumerate(layout):
        y = n - 1 - row
        if kind == "header":
            ax.text(0.0, y, item, transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8,
                    fontweight="bold", color="0.25")
            ax.axhline(y + 0.5, color="0.85", lw=0.6)
            continue
        x, lo, hi, basis = claim_position(item)
        color = VERDICT_COLORS.get(item.get("verdict", ""), "0.5")
        if basis == NO_SCALE:
            ax.plot([0], [y], marker="x", color="0.5", ms=5)
        else:
            marker = "o" if basis == BY_DELTA else "s"
            ax.plot([lo, hi], [y, y], color=color, lw=2, solid_capstyle="butt")
            ax.plot([x], [y], marker=marker, color=color, ms=5, mec="black", mew=0.4)
            lim = max([lim] + [abs(v) for v in (x, lo, hi) if math.isfinite(v)])  # an undefined claim adds nothing
    ax.axvspan(-1, 1, color="0.93", zorder=0)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xscale("symlog", linthresh=1.0, linscale=1.0)
    ax.set_xlim(-lim * 1.3, lim * 1.3)
    steps = [v for v in (1, 3, 10, 30, 100, 300, 1000, 3000, 10000) if v <= lim * 1.3]
    ticks = [-v for v in reversed(steps)] + [0] + steps
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks([n - 1 - i for i, (k, _) in enumerate(layout) if k == "claim"],
                  [item["id"] for k, item in layout if k == "claim"], fontsize=7)
    ax.tick_params(axis="y", pad=2)
    ax.set_xlabel("(effect − null) ÷ δ  (○)   or ÷ 95%-interval half-width when no δ  (□);  > 0 = the paper's side",
                  fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    handles = [plt.Line2D([], [], color=c, lw=2, marker="o", label=v.replace("_", " ")) for v, c in VERDICT_COLORS.items()]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.93", label="|x| < 1: inside ±δ / interval reaches 0"))
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
