"""`python -m engine report` (issue #24): one Markdown document to hand in, on a whole lab
and on a partial one."""
from conftest import engine, write_lab
from makers import done_run

from engine.core.config import load


def test_a_report_of_every_comparison_with_curves_and_provenance(trained, tmp_path):
    out = tmp_path / "out"
    got = engine("report", "all", "--config", trained, "--out", out, check=True)
    assert str(out / "report.md") in got.stdout
    doc = (out / "report.md").read_text()
    for title in ("## Tiny summary", "## Tiny side by side"):
        assert title in doc
    assert "| Expected |" in doc or "Expected" in doc.split("## Tiny summary")[1]
    for png in ("summary-curves.png", "side-curves.png"):
        assert f"](figures/{png})" in doc and (out / "figures" / png).stat().st_size > 1000
    appendix = doc.split("## Appendix: the runs behind the figures")[1]
    for exp in ("rot/", "ft/", "scratch/"):
        assert exp in appendix
    assert "2.14" in appendix or "torch" in appendix  # the torch version column
    assert "engine/__main__.py run" in appendix or " run ft" in appendix  # the command


def test_a_partial_lab_names_what_is_missing_and_a_typo_is_one_line(tmp_path):
    cfg = write_lab(tmp_path)
    done_run(load(cfg), "scratch", acc=0.4)  # no rot, no ft; no provenance either
    out = tmp_path / "reports"
    engine("report", "summary", "--config", cfg, check=True)
    doc = (out / "summary.md").read_text()
    assert "Missing (no run yet, skipped): " in doc and "rot" in doc.split("Missing")[1]
    assert "no provenance.json" in doc and "Traceback" not in doc
    typo = engine("report", "sumary", "--config", cfg)
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "summary" in typo.stderr
    (tmp_path / "empty").mkdir()
    empty = write_lab(tmp_path / "empty")
    engine("report", "all", "--config", empty, check=True)
    assert "No runs yet" in (tmp_path / "empty" / "reports" / "report.md").read_text()
