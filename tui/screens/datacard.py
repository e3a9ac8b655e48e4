"""The dataset card of an experiment: `python -m engine dataset NAME` (classes, images per
class, image sizes, four samples) drawn by the engine in its own process."""
from __future__ import annotations

from rich.text import Text

from tui.screens.engine_box import EngineBox, engine_ansi


def dataset_text(config: str, name: str, width: int) -> Text:
    """Blocks while the engine reads the dataset; raises RunError with its one line."""
    return engine_ansi(["dataset", name, "--config", config, "--no-png", "--width",
                        str(width)], "dataset card")


class DatasetCard(EngineBox):
    KIND = "dataset"

    def __init__(self, config: str, name: str) -> None:
        super().__init__(f"dataset: {name}", f"reading the dataset of {name}...")
        self.config, self.experiment = config, name

    def fetch(self, width: int) -> Text:
        return dataset_text(self.config, self.experiment, width)
