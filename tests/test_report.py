"""The report: every claim row present, every figure referenced exists and is embedded; the
summary figure puts every claim on one scale; δ, seeds to decide, group sub-rows and figure
links are in the claims table; nothing loads from outside the file."""

import base64
import json
import math
import re
from html.parser import HTMLParser

import pytest


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.claim_rows, self.group_rows, self.images, self.scripts, self.links = [], [], [], 0, []
        self.ids, self.anchors, self.external = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "tr" and "data-claim" in a:
            self.claim_rows.append(a["data-claim"])
        if tag == "tr" and "data-group" in a:
            self.group_rows.append(a["data-group"])
        if tag == "img":
            self.images.append(a)
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "a") and a.get("href", "").startswith("http"):
            self.links.append(a["href"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.anchors.append(a["href"][1:])
        for key in ("src", "href", "data", "action", "srcset", "poster"):
            value = a.get(key, "")
            if value and not value.startswith(("#", "data:")):
                self.external.append((tag, key, value))


def _self_contained(page: str, parser: _Collect) -> None:
    """No scripts, no reference to anything outside the file (only data: URIs and #anchors)."""
    assert parser.scripts == 0 and parser.links == [] and parser.external == []
    assert not re.search(r"(src|href)\s*=\s*['\"]?https?:", page, re.I)
    assert "@import" not in page and "url(" not in page  # no CSS loads either
    assert all(a in parser.ids for a in parser.anchors)  # every in-page link lands somewhere


# ----------------------------------------------------------------------------- hand-made runs (fast)


def _png(path, color):
    from springback.report.figures import plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1], color=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=30)
    plt.close(fig)


def _claim(id, paper, effect, lo, hi, verdict, delta=None, needed=None, groups=None, null=0.0, **details):
    return {"id": id, "statement": f"statement of {id}", "paper": paper, "effect": effect, "ci_low": lo, "ci_high": hi,
            "n_seeds": 3, "verdict": verdict, "unit": "u", "details": {"null": null, **details}, "delta": delta,
            "seeds_needed": needed, "groups": groups or {}}


def _fake_run(root, experiment, claims, figures):
    d = root / f"{experiment}-0000000000"
    for i, f in enumerate(figures):
        _png(d / "figures" / f"{f}.png", f"C{i}")
    (d / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text("seeds: [0, 1, 2]\n")
    result = {"experiment": experiment, "claims": claims, "figures": [f"figures/{f}.png" for f in figures],
              "timings": {"run_s": 1.0}, "versions": {"torch": "x"}, "config_hash": "0000000000"}
    (d / "result.json").write_text(json.dumps(result))
    return d


@pytest.fixture
def fake_runs(tmp_path):
    groups = {"sentiment": {"effect": 0.5, "ci_low": 0.1, "ci_high": 0.9, "n_seeds": 3, "verdict": "reproduced",
                            "delta": 0.2, "seeds_needed": None},
              "safety": {"effect": -0.2, "ci_low": -0.9, "ci_high": 0.5, "n_seeds": 3, "verdict": "inconclusive",
                         "delta": 0.2, "seeds_needed": ">1000"}}
    rebound = _fake_run(tmp_path, "rebound", [
        _claim("rebound.fast_then_slow", "Fig. 4 [P1 §5.2]", 2.0, 1.0, 3.0, "reproduced", delta=0.5),
        _claim("rebound.kl_return", "Table 3 [P1 §5.2]", -4.0, -6.0, -2.0, "not_reproduced"),
        _claim("rebound.pooled", "Fig. 4 [P1 §5.2]", 0.15, -0.4, 0.7, "inconclusive", delta=0.2, needed=">1000",
               groups=groups, figures=["rebound_kl"]),
    ], ["rebound_score", "rebound_kl"])
    dynamics = _fake_run(tmp_path, "dynamics", [
        _claim("dynamics.absent_one", "P2 abstract (our formulation)", 0.01, -0.02, 0.04, "absent", delta=0.1),
        _claim("dynamics.undecided", "P2 abstract", 0.3, -0.1, 0.7, "inconclusive", needed=7),
        _claim("dynamics.no_interval", "ours", 0.2, float("nan"), float("nan"), "inconclusive"),
        _claim("dynamics.corr", "P2 abstract", 0.6, 0.4, 0.7, "reproduced", delta=0.1, null=0.2),
    ], ["dynamics_forces"])
    return tmp_path, [rebound, dynamics]


def test_claim_position_on_the_common_scale():
    from springback.report.summary import claim_position

    # With δ: (value − null)/δ, so the band edges sit at ±1.
    assert claim_position(_claim("a", "", 2.0, 1.0, 3.0, "reproduced", delta=0.5)) == (4.0, 2.0, 6.0, "delta")
    *xs, basis = claim_position(_claim("b", "", 0.6, 0.4, 0.7, "reproduced", delta=0.1, null=0.2))
    assert xs == pytest.approx([4.0, 2.0, 5.0]) and basis == "delta"  # shifted by the null first
    # Without δ: divided by the interval's half-width (2.0): the interval spans x ± 1.
    assert claim_position(_claim("c", "", -4.0, -6.0, -2.0, "not_reproduced")) == (-2.0, -3.0, -1.0, "half_width")
    # Neither δ nor an interval: no position.
    x, lo, hi, basis = claim_position(_claim("d", "", 0.2, float("nan"), float("nan"), "inconclusive"))
    assert basis == "none" and math.isnan(x)


def test_summary_groups_by_paper_then_experiment():
    from springback.report.summary import ordered, paper_of, summary_figure

    assert paper_of({"paper": "Fig. 4 [P1 §5.2]"}) == "P1" and paper_of({"paper": "P2 abstract"}) == "P2"
    assert paper_of({"paper": "our formulation"}) == "ours" and paper_of({"paper": "SP1"}) == "ours"
    claims = [("dynamics", {"id": "d1", "paper": "P2"}), ("rebound", {"id": "r1", "paper": "[P1]"}),
              ("theory", {"id": "t1", "paper": "ours"}), ("rebound", {"id": "r2", "paper": "[P1]"}),
              ("scaling", {"id": "s1", "paper": "[P1 §5.3]"})]
    assert [c["id"] for _, _, c in ordered(claims)] == ["r1", "r2", "s1", "d1", "t1"]
    assert summary_figure([]) is None


def test_report_summary_table_links_and_groups(fake_runs):
    from springback.report import write_report

    out, runs = fake_runs
    path = write_report(runs, out, wall_s={"rebound": 1.0})
    page = path.read_text()
    parser = _Collect()
    parser.feed(page)
    _self_contained(page, parser)
    ids = ["rebound.fast_then_slow", "rebound.kl_return", "rebound.pooled", "dynamics.absent_one",
           "dynamics.undecided", "dynamics.no_interval", "dynamics.corr"]
    assert parser.claim_rows == ids
    assert parser.group_rows == ["rebound.pooled[sentiment]", "rebound.pooled[safety]"]
    # The summary figure sits above the claims table and is inlined.
    summary = [img for img in parser.images if img.get("data-file") == "report_summary.png"]
    assert len(summary) == 1 and page.index("report_summary.png") < page.index("<table id=\"claims\"")
    assert base64.b64decode(summary[0]["src"].split(",", 1)[1]) == (out / "report_summary.png").read_bytes()
    # δ and the seeds that would decide an inconclusive claim, in the claim's own row.
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr id='claim-([^']+)'.*?</tr>", page)}
    assert "<td>0.5</td>" in rows["rebound.fast_then_slow"] and "<td>0.2</td>" in rows["rebound.pooled"]
    assert "(&gt;1000 to decide)" in rows["rebound.pooled"] and "≈7 to decide" in rows["dynamics.undecided"]
    assert "to decide" not in rows["rebound.fast_then_slow"]  # decided claims need no more seeds
    assert "absent" in rows["dynamics.absent_one"] and "background:#dde7f6" in rows["dynamics.absent_one"]
    # Figure links: a claim naming its figures links to those; others to all their experiment's.
    links = {k: re.findall(r"href='#([^']+)'", v) for k, v in rows.items()}
    assert links["rebound.pooled"] == ["fig-rebound-rebound_kl"]
    assert links["rebound.kl_return"] == ["fig-rebound-rebound_score", "fig-rebound-rebound_kl"]
    assert links["dynamics.corr"] == ["fig-dynamics-dynamics_forces"]
    # Counts include absent; the markdown carries δ, seeds to decide and the group lines.
    assert "<b>2</b> reproduced, <b>1</b> not reproduced,\n<b>1</b> absent, <b>3</b> inconclusive" in page
    md = (out / "report.md").read_text()
    assert "| 0.5 | 3 | **reproduced** |" in md and "3 (>1000 to decide)" in md and "| ↳ `safety` |" in md
    assert "![every claim on a common scale](report_summary.png)" in md


@pytest.mark.slow
def test_report_html_is_complete_and_self_contained(tiny_rebound_run, tmp_path):
    from springback.api import load_result
    from springback.report import write_report

    result = load_result(tiny_rebound_run)
    path = write_report([tiny_rebound_run], tmp_path, wall_s={"rebound": 1.5})
    page = path.read_text()
    parser = _Collect()
    parser.feed(page)
    assert parser.claim_rows == [c["id"] for c in result["claims"]]
    _self_contained(page, parser)  # opens offline
    embedded = {img["data-file"]: img["src"] for img in parser.images if img["data-file"] != "report_summary.png"}
    assert set(embedded) == set(result["figures"]) and embedded
    for name, src in embedded.items():
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (tiny_rebound_run / name).read_bytes()
    for c in result["claims"]:
        assert c["verdict"] in page
    md = (tmp_path / "report.md").read_text()
    assert all(f"`{c['id']}`" in md for c in result["claims"])
    assert result["versions"]["torch"] in page and "Environment" in page


def test_seeds_text_says_why_an_inconclusive_claim_has_no_seed_count():
    from springback.report.html import seeds_text

    assert seeds_text({"n_seeds": 9, "verdict": "inconclusive", "seeds_needed": 23}) == "9 (≈23 to decide)"
    split = {"n_seeds": 9, "verdict": "inconclusive", "seeds_needed": None, "details": {"groups_disagree": True}}
    assert "disagree in sign" in seeds_text(split)
    assert seeds_text({"n_seeds": 9, "verdict": "reproduced", "seeds_needed": None}) == "9"
