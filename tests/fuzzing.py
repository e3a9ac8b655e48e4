"""Hostile and malformed input for the fuzz tests: generated experiments.toml documents
(valid TOML with wrong types, unknown keys, extreme numbers, unicode names, nesting; and
text that is not TOML), --set overrides and run references, each fed to the real CLI."""
import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from engine.cli import main
from engine.core.settings import FIELDS

KEYS = [*FIELDS, "title", "group", "description", "expect", "reference", "kind",
        "experiments", "base", "axes", "components", "mode", "seeds", "runs_dir",
        "runs_per_gpu", "executor", "metric", "value", "source", "pretrained", "file",
        "weights_file", "bogus", "ĸéy ✓"]
TABLES = ["lab", "defaults", "experiment", "compare", "sweep", "ablation", "junk"]

scalars = st.one_of(st.integers(min_value=-2**63, max_value=2**63 - 1), st.booleans(),
                    st.floats(), st.text(max_size=12), st.sampled_from(
                        ["part1", "resnet18", "cifar10", "all", "fc", "IMAGENET1K_V1",
                         "../../etc/passwd", "/tmp", "", "demo"]))
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=10)
tables = st.dictionaries(keys, values, max_size=6)
named = st.dictionaries(st.one_of(st.sampled_from(["a", "b", "part1", "demo"]),
                                  st.text(min_size=1, max_size=6)), tables, max_size=3)
documents = st.one_of(
    st.fixed_dictionaries({}, optional={
        "lab": tables, "defaults": tables, "experiment": named, "compare": named,
        "sweep": named, "ablation": named, "junk": tables}),
    st.dictionaries(st.sampled_from(TABLES), values, max_size=3))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(x)}"
                            for k, x in v.items()) + " }"


def to_toml(doc: dict) -> str:
    top, sections = [], []
    for name, body in doc.items():
        if not isinstance(body, dict):
            top.append(f"{name} = {toml_value(body)}")
        elif body and all(isinstance(x, dict) for x in body.values()) and name in (
                "experiment", "compare", "sweep", "ablation"):
            for sub, table in body.items():
                sections.append(f"[{name}.{json.dumps(sub, ensure_ascii=False)}]")
                sections += [f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}"
                             for k, v in table.items()]
        else:
            sections.append(f"[{name}]")
            sections += [f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}"
                         for k, v in body.items()]
    return "\n".join(top + sections) + "\n"


def cli(*args) -> tuple[int, str, str]:
    """The real CLI in this process; any exception but SystemExit escapes to the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own usage errors
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def assert_clean(rc, err: str) -> None:
    """Exit 0, or 2 with one line and no traceback."""
    assert rc in (0, 2), (rc, err)
    assert "Traceback" not in err
    if rc == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 or lines[0].startswith("usage:"), err


WORK = Path(tempfile.mkdtemp(prefix="rotunda-fuzz-"))


def check_document(text: str) -> None:
    """experiments.toml with this text loads (exit 0) or is one line and exit 2."""
    path = WORK / "experiments.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    rc, _, err = cli("list", "--config", path)
    assert_clean(rc, err)
