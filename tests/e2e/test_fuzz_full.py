"""The fuzz suite at size: generated experiments.toml documents (seven in ten built from
the real tables and keys with wrong types, unknown keys, extreme numbers, unicode and
nesting; three in ten of arbitrary text) through `engine list`: each loads or is one line
with exit 2, never a traceback (docs/reliability.md). By default 1,000 documents; the full
10,000 behind `python -m pytest -m full` (nightly, on demand)."""
import pytest
from fuzzing import check_document, documents, to_toml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FULL = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.timeout(1800)  # a minute or two idle; pytest's 300 s default is per test
@settings(max_examples=700, **FULL)
@given(documents)
def test_a_thousand_documents_built_from_the_schema(doc):
    check_document(to_toml(doc))


@pytest.mark.timeout(1800)
@settings(max_examples=300, **FULL)
@given(st.text(max_size=300))
def test_a_thousand_documents_arbitrary_text(text):
    check_document(text)


@pytest.mark.full
@pytest.mark.timeout(1800)
@settings(max_examples=7000, **FULL)
@given(documents)
def test_ten_thousand_documents_built_from_the_schema(doc):
    check_document(to_toml(doc))


@pytest.mark.full
@pytest.mark.timeout(1800)
@settings(max_examples=3000, **FULL)
@given(st.text(max_size=300))
def test_ten_thousand_documents_arbitrary_text(text):
    check_document(text)
