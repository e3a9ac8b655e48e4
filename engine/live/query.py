"""The filter language of the app's `/` box (and `engine status --where`): words match
text, comparisons match figures and settings, and every term must hold.

    resnet done              runs whose name, id, state, tags or note hold both words
    acc>0.9  acc>90%  acc>90 best accuracy above 90% (a fraction; above 1 reads as a percent)
    lr=0.1 model=resnet*     a setting (or a summary figure) equal to a value, glob for text
    tag=baseline  #baseline  runs tagged baseline
    epochs>=30 state!=failed

Operators: = (also ==), !=, <, <=, >, >=. A run without the figure matches no comparison
but `!=`. A key that nothing has (a typo) is reported by `unknown`, so that the app can say
so rather than show an empty table.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.live.snapshot import RunRow

TERM = re.compile(r'([A-Za-z_][\w.]*)\s*(<=|>=|!=|==|=|<|>)\s*("[^"]*"|[^\s"]+)')
ALIASES = {"tag": "tags", "ep": "epoch", "run_id": "run", "exp": "experiment",
           "ips": "images_per_s"}
# fractions shown as percentages: a bound above 1 (acc>90) is read as a percent
FRACTION = re.compile(r"(^|_)(acc|accuracy)($|_)")


class QueryError(ValueError):
    """A comparison that cannot be made (acc>high): it matches nothing."""


@dataclass(frozen=True)
class Term:
    key: str
    op: str
    value: str

    def holds(self, fields: Mapping) -> bool:
        have = fields.get(self.key)
        if have is None or have == "" or have == ():
            return self.op == "!="
        if isinstance(have, (tuple, list)):  # tags, train_layers: = means "holds"
            inside = any(_equal(v, self.value, self.key) for v in have)
            return inside if self.op in ("=", "==") else (not inside if self.op == "!="
                                                           else False)
        if self.op in ("=", "=="):
            return _equal(have, self.value, self.key)
        if self.op == "!=":
            return not _equal(have, self.value, self.key)
        a, b = _ordered(have, self.value, self.key)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]


def _number(text: str, key: str) -> float | None:
    t = text.strip()
    pct = t.endswith("%")
    try:
        x = float(t[:-1] if pct else t)
    except ValueError:
        return None
    if pct or (FRACTION.search(key) and abs(x) > 1):
        x /= 100
    return x


def _equal(have, want: str, key: str) -> bool:
    if isinstance(have, bool):
        return want.lower() in (("true", "yes", "1") if have else ("false", "no", "0"))
    if isinstance(have, (int, float)):
        x = _number(want, key)
        return x is not None and math.isclose(have, x, rel_tol=1e-6, abs_tol=1e-12)
    return fnmatch.fnmatchcase(str(have).lower(), want.lower())


def _ordered(have, want: str, key: str) -> tuple:
    if isinstance(have, (int, float)) and not isinstance(have, bool):
        x = _number(want, key)
        if x is None:
            raise QueryError(f"{key} is a number: {want!r} is not")
        return have, x
    return str(have).lower(), want.lower()


@dataclass(frozen=True)
class Query:
    words: tuple[str, ...] = ()
    terms: tuple[Term, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.terms)

    def keys(self) -> set[str]:
        return {t.key for t in self.terms}

    def matches(self, fields: Mapping, text: Iterable) -> bool:
        """Every word in one of the `text` fields (case-insensitive), every term true of
        `fields`; a term that cannot compare (acc>high) matches nothing."""
        hay = [str(x).lower() for x in text if x is not None]
        if not all(any(w in h for h in hay) for w in self.words):
            return False
        try:
            return all(t.holds(fields) for t in self.terms)
        except QueryError:
            return False

    def unknown(self, known: Iterable[str]) -> list[str]:
        """The terms' keys that none of `known` is (typos, figures nothing logged)."""
        known = set(known)
        return sorted(k for k in self.keys() if k not in known)


def parse(text: str) -> Query:
    """`acc>0.9 lr=0.1 resnet #base` -> words ("resnet",), terms (acc>0.9, lr=0.1,
    tags=base). Never raises: anything that is not a comparison is a word."""
    terms = []

    def take(m: re.Match) -> str:
        key = ALIASES.get(m.group(1).lower(), m.group(1).lower())
        terms.append(Term(key, m.group(2), m.group(3).strip('"')))
        return " "
    rest = TERM.sub(take, text or "")
    words = []
    for w in rest.split():
        if w.startswith("#") and len(w) > 1:
            terms.append(Term("tags", "=", w[1:]))
        else:
            words.append(w.lower())
    return Query(tuple(words), tuple(terms))


def flat(prefix: str, data: Mapping | None) -> dict:
    """A mapping's plain values (numbers, text, lists of them) under their own names;
    nested mappings as prefix.key only."""
    out = {}
    for k, v in (data or {}).items():
        if isinstance(v, Mapping):
            out.update(flat(f"{prefix}{k}.", v))
        elif isinstance(v, (int, float, str, bool, list, tuple)) or v is None:
            out[f"{prefix}{k}".lower()] = tuple(v) if isinstance(v, list) else v
    return out


def run_fields(r: RunRow) -> dict:
    """What a run's terms compare: its row's figures, its summary's, its settings (once
    read: RunRow.settings) and its tags and note; `acc` is its headline figure."""
    out = {**flat("", r.settings), **flat("", r.summary)}
    out.update(state=r.state, experiment=r.experiment, run=r.run_id, epoch=r.epoch,
               epochs=r.epochs, best_acc=r.best_acc, images_per_s=r.images_per_s,
               elapsed=r.elapsed, eta=r.eta, tags=r.tags, note=r.note, acc=r.acc)
    return out


def run_text(r: RunRow) -> tuple:
    """What a run's words are looked for in."""
    return (r.experiment, r.run_id, r.state, r.note, *r.tags)


SETTINGS_FREE = frozenset(run_fields(RunRow("", "", "", "", "", 0, 0, None, None, None, None,
                                            None, None, None, None)))


def keep_run(q: Query, r: RunRow) -> bool:
    """Whether the filter `q` lets run `r` through (its fields built only for terms)."""
    if not q:
        return True
    return q.matches(run_fields(r) if q.terms else {}, run_text(r))


def needs_settings(q: Query) -> bool:
    """Whether a run's settings must be read for `q` (a key its row alone lacks)."""
    return any(t.key not in SETTINGS_FREE for t in q.terms)


def experiment_fields(e, group: str, latest: RunRow | None) -> dict:
    """What an experiment's terms compare: its declared settings, its group, expected
    figure, and its latest run's state and headline accuracy (`acc`)."""
    s = e.settings
    out = flat("", {f.name: getattr(s, f.name) for f in dataclasses.fields(s)})
    out.update(name=e.name, experiment=e.name, group=group,
               expect=e.expect.value if e.expect else None)
    if latest is not None:
        got = run_fields(latest)
        out.update(state=got["state"], acc=got["acc"], run=got["run"])
    return out
