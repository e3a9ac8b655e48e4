"""What differs between two runs, from their directories alone (no torch): settings,
environment and code, data, then their headline figures side by side. The CLI's
`engine diff` and the app's diff screen render the same Table; compare tables use
varying() for their "Differs in" column."""
from __future__ import annotations

from pathlib import Path

from engine.core import rundir as rd
from engine.core.provenance import PROVENANCE, describe_code
from engine.core.table import PCT, RATE, SECS, TEXT, Table, fmt

# summary.json's figures, with the labels the comparison tables use
FIGURES = (("test_acc_at_best", PCT, "acc@best"), ("best_test_acc", PCT, "best acc"),
           ("val_acc_at_best", PCT, "val acc@best"), ("knn_acc_at_best", PCT, "k-NN@best"),
           ("linear_acc", PCT, "linear probe"), ("best_epoch", TEXT, "best epoch"),
           ("wall_s", SECS, "wall"), ("median_images_per_s", RATE, "img/s (median)"))
ENV_KEYS = ("python", "torch", "torchvision", "cuda", "cudnn", "gpu", "gpu_memory_mb",
            "driver", "cpu", "cpu_count", "host", "device")


def _settings(run_dir: Path) -> dict:
    return rd.read_config(run_dir).get("settings", {})


def varying(run_dirs) -> list[str]:
    """The settings whose values are not the same in every one of these runs."""
    tables = [_settings(d) for d in run_dirs]
    keys = sorted({k for t in tables for k in t})
    return [k for k in keys if len({repr(t.get(k)) for t in tables}) > 1]


def differs_cell(run_dir: Path | None, keys: list[str]) -> str:
    if run_dir is None or not keys:
        return "-"
    s = _settings(run_dir)
    return ", ".join(f"{k}={rd.toml_value(s[k]) if k in s else '-'}" for k in keys)


def _flat_code(p: dict) -> dict:
    code = p.get("code") or {}
    out = {"commit": describe_code(code) if code else None}
    if p.get("config_code"):
        out["experiments.toml's commit"] = describe_code(p["config_code"])
    return out


def diff_table(a: Path, b: Path) -> Table:
    """Only what differs, in three groups, then the figures with deltas."""
    name_a, name_b = f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"
    table = Table(f"{name_a} against {name_b}", [("Group", TEXT), ("Key", TEXT),
                                                 ("A", TEXT), ("B", TEXT), ("Delta", TEXT)])
    table.whole = {"Group", "Key", "A", "B", "Delta"}  # sized to their content, never cut
    sa, sb = _settings(a), _settings(b)
    for k in varying([a, b]):
        table.rows.append(["settings", k, _show(sa.get(k)), _show(sb.get(k)), ""])
    pa, pb = rd.read_json(a / PROVENANCE), rd.read_json(b / PROVENANCE)
    if pa is None or pb is None:
        table.notes.append(f"{'A' if pa is None else 'B'} has no {PROVENANCE} (a run made "
                           "before runs recorded it): environment, code and data not compared")
    else:
        ea, eb = pa.get("environment") or {}, pb.get("environment") or {}
        pairs = [(k, ea.get(k), eb.get(k)) for k in ENV_KEYS]
        ca, cb = _flat_code(pa), _flat_code(pb)
        pairs += [(k, ca.get(k), cb.get(k)) for k in dict.fromkeys([*ca, *cb])]
        for k, va, vb in pairs:
            if va != vb:
                table.rows.append(["environment and code", k, _show(va), _show(vb), ""])
        da, db = pa.get("data") or {}, pb.get("data") or {}
        for k in ("source", "classes", "sizes", "hash"):
            if da.get(k) != db.get(k):
                table.rows.append(["data", k, _show(da.get(k)), _show(db.get(k)), ""])
    if not table.rows:
        table.notes.append("no differences in settings, environment, code or data")
    ra, rb = rd.read_json(a / rd.SUMMARY) or {}, rd.read_json(b / rd.SUMMARY) or {}
    for key, f, label in FIGURES:
        va, vb = ra.get(key), rb.get(key)
        if va is None and vb is None:
            continue
        delta = ""
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            delta = (f"{100 * (vb - va):+.2f} points" if f == PCT else
                     f"{vb - va:+.0f}s" if f == SECS else f"{vb - va:+,.0f}" if f == RATE
                     else f"{vb - va:+g}")
        table.rows.append(["figures", label, fmt(va, f), fmt(vb, f), delta])
    if not ra or not rb:
        table.notes.append("a run without summary.json (not done) shows no figures")
    return table


def _show(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    return rd.toml_value(v) if isinstance(v, (list, tuple, bool)) else str(v)
