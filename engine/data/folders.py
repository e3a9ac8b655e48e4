"""Image-folder datasets as laid out on disk (train/<class>/*, test/<class>/* or
val/<class>/*): where each split is and which files it holds. No torch, so that the
dataset card reads a folder without starting torch; sources.py decodes the images."""
from __future__ import annotations

from pathlib import Path

from engine.core.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff"}
DEMO_HINT = "or try the synthetic demo: python -m engine run demo"


def layout(root: Path) -> tuple[Path, Path, list[str]]:
    """(train dir, test dir, class names), or a DataError saying where it looked."""
    train_dir, test_dir = root / "train", labelled_test_dir(root)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"image folder not found in {root} (looked for train/<class>/ and "
                        "test/<class>/ or val/<class>/). Put the images there, set data_dir, "
                        + DEMO_HINT)
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{train_dir} has no class folders (expected train/<class>/*.jpg)")
    return train_dir, test_dir, classes


def scan_split(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    items = []
    for i, cls in enumerate(classes):
        d = split_dir / cls
        if d.is_dir():
            items.extend((p, i) for p in sorted(d.iterdir())
                         if p.suffix.lower() in IMAGE_EXTENSIONS)
    return items


def labelled_test_dir(root: Path) -> Path | None:
    """test/<class>/, else val/<class>/ (a test/ of unlabelled images, as the Visual
    Decathlon archive has, is passed over)."""
    return next((root / n for n in ("test", "val") if (root / n).is_dir()
                 and any(p.is_dir() for p in (root / n).iterdir())), None)
