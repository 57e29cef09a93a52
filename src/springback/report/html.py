"""Write one report for one or more run directories.

The HTML is self-contained: figures are inlined as base64 PNG, no scripts, no network.
Verdicts are copied from each run's ``result.json``, where they were computed from data.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from pathlib import Path
from typing import Sequence

from ..io import atomic_write_text

_VERDICT_STYLE = {
    "reproduced": "background:#d8f3dc",
    "not_reproduced": "background:#ffd6d6",
    "inconclusive": "background:#fff3c4",
}


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "—"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(x)


def _load(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    result["_dir"] = run_dir
    result["_config"] = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else ""
    return result


def write_report(run_dirs: Sequence[str | Path], out: str | Path, wall_s: dict[str, float] | None = None,
                 title: str = "springback report") -> Path:
    """Write ``out/report.html`` and ``out/report.md``; returns the HTML path."""
    out = Path(out)
    results = [_load(Path(d)) for d in run_dirs]
    wall_s = wall_s or {}
    claims = [(r["experiment"], c) for r in results for c in r["claims"]]
    counts = {v: sum(1 for _, c in claims if c["verdict"] == v) for v in ("reproduced", "not_reproduced", "inconclusive")}

    # ------------------------------------------------------------------ markdown
    md = [f"# {title}", "", f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
          f"{counts['reproduced']} reproduced, {counts['not_reproduced']} not reproduced, "
          f"{counts['inconclusive']} inconclusive (of {len(claims)} claims).", "",
          "## Claims", "", "| claim | paper | effect | 95% CI | seeds | verdict |", "|---|---|---|---|---|---|"]
    for _, c in claims:
        md.append(f"| `{c['id']}` | {c['paper']} | {_fmt(c['effect'])} {c.get('unit', '')} | "
                  f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}] | {c['n_seeds']} | **{c['verdict']}** |")
    for r in results:
        md += ["", f"## {r['experiment']}", ""]
        for c in r["claims"]:
            md.append(f"- `{c['id']}`: {c['statement']}")
        for f in r["figures"]:
            md.append(f"\n![{f}]({(r['_dir'] / f).relative_to(out) if (r['_dir'] / f).is_relative_to(out) else r['_dir'] / f})")
        md.append(f"\nRun directory `{r['_dir']}`; wall time {_fmt(wall_s.get(r['experiment'], r['timings'].get('run_s')))} s.")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")

    # ------------------------------------------------------------------ html
    e = html.escape
    rows = []
    for exp, c in claims:
        rows.append(
            f"<tr id='claim-{e(c['id'])}' data-claim='{e(c['id'])}'><td><code>{e(c['id'])}</code><br><small>{e(c['statement'])}</small></td>"
            f"<td><small>{e(c['paper'])}</small></td><td>{_fmt(c['effect'])}<br><small>{e(c.get('unit', ''))}</small></td>"
            f"<td>[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]</td><td>{c['n_seeds']}</td>"
            f"<td style='{_VERDICT_STYLE.get(c['verdict'], '')}'><b>{e(c['verdict'])}</b></td></tr>"
        )
    sections = []
    for r in results:
        figs = []
        for f in r["figures"]:
            data = base64.b64encode((r["_dir"] / f).read_bytes()).decode()
            figs.append(f"<figure><img alt='{e(f)}' data-file='{e(f)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{e(Path(f).stem)}</figcaption></figure>")
        t = r.get("timings", {})
        sections.append(
            f"<section id='exp-{e(r['experiment'])}'><h2>{e(r['experiment'])}</h2>"
            f"<p>Wall time {_fmt(wall_s.get(r['experiment'], t.get('run_s')))} s "
            f"(cells run {t.get('cells_run', '—')}, reused {t.get('cells_skipped', '—')}); "
            f"run directory <code>{e(str(r['_dir']))}</code>; config hash <code>{e(r.get('config_hash', ''))}</code>.</p>"
            f"<div class='figs'>{''.join(figs)}</div>"
            f"<details><summary>resolved config</summary><pre>{e(r['_config'])}</pre></details></section>"
        )
    first = results[0] if results else {}
    env = {"versions": first.get("versions", {}), "git": first.get("git"), "machine": first.get("machine", {})}
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;width:100%;font-size:14px}} td,th{{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}}
th{{background:#f3f3f3}} .figs{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0;max-width:48%}}
figure img{{max-width:100%;border:1px solid #eee}} figcaption{{font-size:12px;color:#555}} pre{{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}}
</style></head><body>
<h1>{e(title)}</h1>
<p>Generated {e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}.
<b>{counts['reproduced']}</b> reproduced, <b>{counts['not_reproduced']}</b> not reproduced,
<b>{counts['inconclusive']}</b> inconclusive, of {len(claims)} claims. A verdict is <i>reproduced</i> when the
whole 95% interval over seeds lies on the paper's side of zero, <i>not reproduced</i> when it lies wholly on the
other side, and <i>inconclusive</i> otherwise.</p>
<h2>Claims</h2>
<table id="claims"><thead><tr><th>claim</th><th>paper</th><th>effect</th><th>95% CI</th><th>seeds</th><th>verdict</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{''.join(sections)}
<h2>Environment</h2><pre>{e(json.dumps(env, indent=2))}</pre>
<p>Wall time per part (s): <code>{e(json.dumps({k: round(v, 1) for k, v in wall_s.items()}))}</code></p>
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
