"""The filter language (engine/live/query.py) and the notes a run keeps (notes.json)."""
from hypothesis import given
from hypothesis import strategies as st
from makers import write_run

from engine.core import rundir as rd
from engine.live.query import Term, parse

RUN = {"acc": 0.91, "lr": 0.1, "model": "resnet18", "tags": ("baseline", "lr-study"),
       "state": "done", "amp": True, "epochs": 30, "eta": None}


def holds(text: str, fields=RUN, words=("resnet18 run",)) -> bool:
    return parse(text).matches(fields, words)


def test_words_and_terms_all_hold():
    assert holds("acc>0.9") and holds("acc>90") and holds("acc>90%") and not holds("acc>92")
    assert holds("lr=0.1") and holds("lr==0.10") and not holds("lr=0.01") and holds("lr<1e-0")
    assert holds("model=resnet*") and holds("MODEL=ResNet18") and not holds("model=vgg*")
    assert holds("#baseline") and holds("tag=lr-study") and holds("tag!=other")
    assert not holds("tag!=baseline") and not holds("#nope")
    assert holds("amp=true") and not holds("amp=false") and holds("epochs>=30 state!=failed")
    assert holds("resnet") and not holds("resnet vgg") and holds("acc > 0.9 resnet")


def test_a_run_without_the_figure_matches_only_not_equal():
    assert not holds("eta<10") and holds("eta!=10") and not holds("missing>1")
    assert not holds("acc>high")  # cannot compare: matches nothing, never raises


def test_unknown_keys_are_named():
    q = parse("acx>0.9 lr=0.1 #t")
    assert q.unknown(RUN) == ["acx"]
    assert q.terms[-1] == Term("tags", "=", "t")


@given(st.text(max_size=60))
def test_any_text_parses_and_matches_without_raising(text):
    q = parse(text)
    q.matches(RUN, ("x",))


def test_notes_are_written_whole_and_a_poller_sees_a_finished_runs_new_tags(tmp_path):
    d = write_run(tmp_path / "runs", "e", "20261125-100000-aaaa")
    scanner = rd.RunScanner(tmp_path / "runs")
    assert scanner.scan()[0].tags == ()
    rd.write_notes(d, add=("a", "b"), note="first")
    rd.write_notes(d, add=("b", "c"), remove=("a",))
    assert rd.read_notes(d) == {"tags": ["b", "c"], "note": "first"}
    assert not list(d.glob(".*.tmp"))
    run = scanner.scan(full=True)[0]
    assert run.tags == ("b", "c") and run.note == "first"
    assert rd.tag_error("ok-tag_1.2") is None and "not a tag" in rd.tag_error("two words")
    (d / rd.NOTES).write_text("{torn")  # a torn notes.json: no tags, no crash
    assert rd.load_run(d).tags == ()


def test_an_idle_lab_costs_a_poller_no_walk_and_a_new_run_is_seen(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "e", "20261125-100000-aaaa")
    scanner = rd.RunScanner(runs)
    first = scanner.scan()
    assert scanner.scan() is first  # nothing moved: the same list, no status read
    write_run(runs, "e", "20261125-110000-bbbb", "running")
    second = scanner.scan()
    assert [r.run_id for r in second] == ["20261125-110000-bbbb", "20261125-100000-aaaa"]
    assert scanner.scan() is not second  # a live run is read again every poll
    rd.update_status(runs / "e" / "20261125-110000-bbbb", state="done")
    assert [r.raw_state for r in scanner.scan()] == ["done", "done"]
    idle = scanner.scan()
    assert scanner.scan() is idle
    assert scanner.scan(full=True) is idle  # a recheck that found them as they were
    rd.write_notes(runs / "e" / "20261125-100000-aaaa", add=("x",))
    assert scanner.scan(full=True)[1].tags == ("x",)  # one that found a change


def test_a_run_listed_before_its_status_is_written_is_seen_once_it_is(tmp_path):
    """A poll that lands between a launch making the run's folder and writing its
    status.json: the next polls still find the run (nothing else in the lab moves)."""
    runs = tmp_path / "runs"
    write_run(runs, "e", "20261125-100000-aaaa")
    scanner = rd.RunScanner(runs)
    scanner.scan()
    (runs / "e" / "20261125-110000-bbbb").mkdir()
    assert len(scanner.scan()) == 1
    assert len(scanner.scan(full=True)) == 1  # still no status.json, a recheck between
    (runs / "e" / "stray").mkdir()  # a folder that never gets one
    assert len(scanner.scan()) == 1
    rd.atomic_write_json(runs / "e" / "20261125-110000-bbbb" / rd.STATUS, {"state": "queued"})
    assert [r.run_id for r in scanner.scan()] == ["20261125-110000-bbbb",
                                                  "20261125-100000-aaaa"]
    rd.update_status(runs / "e" / "20261125-110000-bbbb", state="done")
    scanner.scan()
    idle = scanner.scan()
    assert scanner.scan() is idle  # ready again: an idle lab is not walked
