"""runs/.index.json (engine/core/index.py): finished runs are read once and cached, and the
cache is never trusted over the runs themselves."""
import json
import sys

import pytest
from makers import write_run

from engine.core import rundir as rd
from engine.core.index import FILE, RunIndex

SUMMARY = {"best_test_acc": 0.5, "test_acc_at_best": 0.5}


@pytest.fixture
def lab(tmp_path):
    runs = tmp_path / "runs"
    for i in range(5):
        write_run(runs, f"e{i % 2}", f"20261204-10000{i}-aaaa", status={"best_acc": 0.5},
                  summary=SUMMARY)
    write_run(runs, "e0", "20261204-110000-bbbb", "running", status={"step": 3})
    RunIndex._open.clear()  # as a new process would
    yield runs
    RunIndex._open.clear()


class Opens:
    """The files Python opens meanwhile (the interpreter's own audit events)."""
    hooked = False
    paths: list | None = None

    def __enter__(self):
        if not Opens.hooked:
            sys.addaudithook(lambda event, args: Opens.paths is not None and event == "open"
                             and Opens.paths.append(str(args[0])))
            Opens.hooked = True
        Opens.paths = []
        return Opens.paths

    def __exit__(self, *exc):
        Opens.paths = None


def listed(runs):
    return {(r.run_id, r.raw_state, r.status.get("best_acc"), r.tags)
            for r in rd.list_runs(runs)}


def test_a_second_reader_opens_the_index_and_only_the_live_runs_files(lab):
    first = listed(lab)
    assert len(first) == 6 and (lab / FILE).is_file()
    RunIndex._open.clear()
    with Opens() as opened:
        assert listed(lab) == first
    assert [p for p in opened if not p.endswith(FILE)] and \
        all("bbbb" in p for p in opened if not p.endswith(FILE))  # the running run's
    entries = json.loads((lab / FILE).read_text())["runs"]
    assert len(entries) == 5 and not any("bbbb" in k for k in entries)


def test_a_run_changed_since_it_was_indexed_is_read_from_its_files(lab):
    listed(lab)
    d = lab / "e0" / "20261204-100000-aaaa"
    rd.update_status(d, best_acc=0.75)  # resumed and done again
    rd.write_notes(lab / "e1" / "20261204-100001-aaaa", add=("tagged",))
    RunIndex._open.clear()
    got = {r.run_id: r for r in rd.list_runs(lab)}
    assert got["20261204-100000-aaaa"].status["best_acc"] == 0.75
    assert got["20261204-100001-aaaa"].tags == ("tagged",)
    scanner = rd.RunScanner(lab)  # the app's reader too
    assert {r.run_id: r.status.get("best_acc") for r in scanner.scan()}[
        "20261204-100000-aaaa"] == 0.75


@pytest.mark.parametrize("damage", ["{torn", "[1, 2]", '{"version": 99, "runs": {}}',
                                    '{"version": 1, "runs": {"e0/20261204-100000-aaaa": 7}}'])
def test_a_damaged_index_is_ignored_and_written_again(lab, damage):
    first = listed(lab)
    (lab / FILE).write_text(damage)
    RunIndex._open.clear()
    assert listed(lab) == first
    assert len(json.loads((lab / FILE).read_text())["runs"]) == 5


def test_a_deleted_run_leaves_the_index_and_a_new_one_joins_it(lab):
    listed(lab)
    gone = lab / "e1" / "20261204-100003-aaaa"
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    write_run(lab, "e1", "20261204-120000-cccc", "failed", status={"error": "boom"})
    RunIndex._open.clear()
    assert {r.run_id for r in rd.list_runs(lab)} >= {"20261204-120000-cccc"}
    entries = json.loads((lab / FILE).read_text())["runs"]
    assert "e1/20261204-100003-aaaa" not in entries and "e1/20261204-120000-cccc" in entries


def test_an_index_entry_for_a_run_whose_files_differ_is_not_used(lab):
    """An index copied from another lab, or written before a run was replaced: its
    signature is not the run's, so the run is read."""
    listed(lab)
    data = json.loads((lab / FILE).read_text())
    entry = data["runs"]["e0/20261204-100000-aaaa"]
    entry[1]["best_acc"] = 0.99  # what the index says, with its old signature...
    entry[0][1] += 1  # ...that no longer matches
    (lab / FILE).write_text(json.dumps(data))
    RunIndex._open.clear()
    assert {r.run_id: r.status.get("best_acc") for r in rd.list_runs(lab)}[
        "20261204-100000-aaaa"] == 0.5
