"""The forecast and optimus comparisons in experiments.toml: what they take, and one line
with file:line for what they do not."""
import pytest
from conftest import ROOT, TINY, write_lab

from engine.core.config import ConfigError, load

SWEEP = TINY + """
[sweep.depths]
base = "scratch"
axes = { model = ["resnet20", "resnet32"] }
"""


def test_the_projects_optimus_tables_load():
    config = load(ROOT / "experiments.toml")
    study = config.compares["optimus_study"]
    assert study.kind == "optimus" and study.sweeps == ("optimus_depths",)
    assert study.holdout == "resnet110"
    assert config.compares["optimus_forecasts"].kind == "forecast"
    assert config.experiments["optimus_base"].expect.value == 0.92


@pytest.mark.parametrize("table, says", [
    ('kind = "optimus"\nsweeps = ["depths"]\nexperiments = ["scratch"]', "studies one sweep"),
    ('kind = "optimus"\nsweeps = ["depths", "depths"]', "studies one sweep"),
    ('kind = "table"\nexperiments = ["scratch"]\nholdout = "resnet20"', "holdout names"),
    ('kind = "summary"\nsweeps = ["depths"]', "name [sweep.NAME]s"),
    ('kind = "forecast"\nsweeps = ["nodepths"]', 'did you mean "depths"'),
])
def test_bad_forecast_and_optimus_tables_are_one_line(tmp_path, table, says):
    path = write_lab(tmp_path, SWEEP + "\n[compare.bad]\n" + table + "\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    msg = str(err.value)
    assert says in msg and "\n" not in msg and "experiments.toml:" in msg
