"""Fuzzing, quick: a hundred hostile inputs per target through the real CLI (the
10,000-document run is tests/e2e/test_fuzz_full.py)."""
from fuzzing import (
    WORK,
    check_document,
    cli,
    documents,
    keys,
    scalars,
    to_toml,
    toml_value,
    values,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.errors import ConfigError
from engine.core.settings import Settings, apply_overrides

BASE = Settings(dataset="synthetic")

QUICK = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
@QUICK
@given(documents)
def test_generated_experiments_files(doc):
    check_document(to_toml(doc))


@QUICK
@given(st.text(max_size=200))
def test_text_that_is_not_toml(text):
    check_document(text)


@QUICK
@given(st.one_of(keys, st.text(max_size=8)), st.one_of(scalars, values),
       st.sampled_from(["=", " = ", "=="]))
def test_set_overrides(key, value, sep):
    """Every command reads --set through apply_overrides: a Settings or one line."""
    try:
        apply_overrides(BASE, [f"{key}{sep}{toml_value(value)}"])
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc), str(exc)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.sampled_from(["..", "../..", "/", "/etc", "/tmp", "a/../../..",
                                  "outside", "outside/run", "", ".", "runs"]),
                 st.text(max_size=30)))
def test_run_references_stay_inside_the_runs_folder(ref):
    runs = WORK / "runs"
    (runs / "e" / "r1").mkdir(parents=True, exist_ok=True)
    (runs / "e" / "r1" / "status.json").write_text('{"state": "done"}')
    outside = WORK / "outside" / "run"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "status.json").write_text('{"state": "failed"}')
    link = runs / "e" / "escape"
    if not link.exists():
        link.symlink_to(outside)
    for cmd in ("resume", "cancel", "gallery"):
        rc, _, err = cli(cmd, ref, "--runs-dir", runs)
        assert rc in (1, 2), (cmd, ref, rc, err)  # refused or a one-line failure
        assert "Traceback" not in err
        assert (outside / "status.json").read_text() == '{"state": "failed"}'


def test_symlinks_and_dotdot_out_of_the_runs_folder_are_refused(tmp_path):
    from engine.core import rundir as rd

    runs = tmp_path / "runs"
    (runs / "e" / "r1").mkdir(parents=True)
    (runs / "e" / "r1" / "status.json").write_text("{}")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "status.json").write_text("{}")
    (runs / "e" / "link").symlink_to(outside)
    assert rd.find_run(runs, "e/r1") == (runs / "e" / "r1").resolve()
    assert rd.find_run(runs, str(runs / "e" / "r1")) == (runs / "e" / "r1").resolve()
    for ref in ("e/link", str(outside), "../elsewhere", "e/../../elsewhere", ""):
        assert rd.find_run(runs, ref) is None, ref


def test_a_typed_path_names_a_run_anywhere_and_nothing_else(tmp_path):
    """What the user types at the CLI: a path to a run directory is that run wherever
    it lives; a folder without status.json, or a name, still resolves only inside."""
    from engine.core import rundir as rd

    runs = tmp_path / "runs"
    (runs / "e" / "r1").mkdir(parents=True)
    (runs / "e" / "r1" / "status.json").write_text("{}")
    elsewhere = tmp_path / "scratch" / "e" / "r9"
    elsewhere.mkdir(parents=True)
    (elsewhere / "status.json").write_text("{}")
    assert rd.find_run(runs, str(elsewhere), anywhere=True) == elsewhere.resolve()
    assert rd.find_run(runs, str(elsewhere)) is None  # from a file or the app: refused
    assert rd.find_run(runs, str(elsewhere.parent), anywhere=True) is None  # no run there
    assert rd.find_run(runs, "e/r1", anywhere=True) == (runs / "e" / "r1").resolve()
    assert rd.find_run(runs, "r9", anywhere=True) is None  # ids resolve inside only
