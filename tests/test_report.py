"""The report: every claim row present, every figure referenced exists and is embedded."""

import base64
from html.parser import HTMLParser

import pytest


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.claim_rows, self.images, self.scripts, self.links = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-claim" in a:
            self.claim_rows.append(a["data-claim"])
        if tag == "img":
            self.images.append(a)
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "a") and a.get("href", "").startswith("http"):
            self.links.append(a["href"])


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
    assert parser.scripts == 0 and parser.links == []  # opens offline
    embedded = {img["data-file"]: img["src"] for img in parser.images}
    assert set(embedded) == set(result["figures"]) and embedded
    for name, src in embedded.items():
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (tiny_rebound_run / name).read_bytes()
    for c in result["claims"]:
        assert c["verdict"] in page
    md = (tmp_path / "report.md").read_text()
    assert all(f"`{c['id']}`" in md for c in result["claims"])
    assert result["versions"]["torch"] in page and "Environment" in page
