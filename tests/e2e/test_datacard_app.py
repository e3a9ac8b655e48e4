"""The dataset card from the app (d on the Experiments view) and through the CLI as a
process, on an image folder the test writes."""
import pytest
from conftest import app_until, engine, write_lab
from makers import UNEVEN_TRAIN, write_uneven_folder

from tui.app import RotundaApp
from tui.screens import DatasetCard

EXPERIMENTS = """
[experiment.pets]
title = "Pets"
dataset = "imagefolder"
data_dir = "pets"

[experiment.gone]
title = "Data elsewhere"
dataset = "imagefolder"
data_dir = "nowhere"

[sweep.pets_lr]
title = "Pets: learning rate"
base = "pets"
axes = { lr = [0.1, 0.01] }
"""


@pytest.fixture
def lab(tmp_path):
    write_uneven_folder(tmp_path / "pets")
    return write_lab(tmp_path, EXPERIMENTS)


async def ready(pilot, app) -> None:
    """Until the experiments table is filled (the first snapshot is in)."""
    await app_until(pilot, lambda: app.snapshot.config is not None
                    and app.query_one("#exp-table").row_count, "the experiments table")
    await pilot.pause(0.2)


async def card_text(pilot, app) -> str:
    """The card's text once the engine has answered ("" if the box closed instead)."""
    def answered():
        if not isinstance(app.screen, DatasetCard):
            return ("",)
        text = str(app.screen.query_one("#dataset-text").render())
        return ("imbalance" in text) and (text,)
    (text,) = await app_until(pilot, answered, "the dataset card (or the box to close)")
    return text


async def test_d_shows_the_dataset_card_of_the_selected_experiment(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("d")
        assert isinstance(app.screen, DatasetCard)
        assert app.screen.query_one("#dataset-box").border_title == "dataset: pets"
        text = await card_text(pilot, app)
        lines = text.splitlines()
        for name, n in UNEVEN_TRAIN.items():
            assert any(line.startswith(name) and line.split()[-2] == str(n) for line in lines)
        assert "imbalance 7x" in text and "samples of the largest classes: cat, dog" in text
        box = app.screen.query_one("#dataset-box")
        assert max(map(len, lines)) <= box.scrollable_content_region.width
        assert not (lab.parent / "reports").exists()  # the app asks for no PNG
        await pilot.press("escape")
        assert not isinstance(app.screen, DatasetCard)


async def test_a_sweep_shows_its_base_and_a_missing_dataset_is_one_notification(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("down", "d")
        assert await card_text(pilot, app) == ""
        # the box may close before the engine has answered
        await app_until(pilot, lambda: app._notifications, "a notification")
        notes = [n.message for n in app._notifications]
        assert len(notes) == 1 and notes[0].startswith("image folder not found in ")
        assert "\n" not in notes[0]
        await pilot.press("down", "d")  # the sweep row: its base experiment, pets
        assert app.screen.query_one("#dataset-box").border_title == "dataset: pets"
        assert "cat" in await card_text(pilot, app)


async def test_d_does_nothing_outside_the_experiments_view(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("2", "d")
        assert not isinstance(app.screen, DatasetCard)


def test_the_cli_as_a_process_one_line_and_exit_2(lab):
    proc = engine("dataset", "pets", "--config", lab, "--set", "data_dir=elsewhere")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "image folder not found in" in proc.stderr
    ok = engine("dataset", "pets", "--config", lab, "--width", "90", check=True)
    assert "cat" in ok.stdout and (lab.parent / "reports" / "dataset-pets.png").exists()
