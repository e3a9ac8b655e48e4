"""The dataset card (python -m engine dataset NAME) on small datasets the tests write:
counts, image sizes, samples, the PNG, and one-line errors."""
import json
import re
from collections import Counter

import numpy as np
import pytest
from conftest import write_lab
from makers import UNEVEN_TEST, UNEVEN_TRAIN, write_cifar, write_h5, write_uneven_folder
from PIL import Image

from engine.cli import main
from engine.data import card as datacard
from engine.report.pixels import half_blocks

EXPERIMENTS = """
[experiment.pets]
dataset = "imagefolder"
data_dir = "pets"
image_size = 24

[experiment.glyphs]
dataset = "synthetic"
synthetic_train = 40
synthetic_test = 20
image_size = 16

[experiment.cifar]
dataset = "cifar10"
data_dir = "cifar"
limit_train = 50

[experiment.h5]
dataset = "hdf5"
data_dir = "m.h5"
image_size = 16
"""


@pytest.fixture
def lab(tmp_path):
    written = write_uneven_folder(tmp_path / "pets")
    return write_lab(tmp_path, EXPERIMENTS), written


def card_json(capsys, cfg, name, *extra):
    assert main(["dataset", name, "--config", str(cfg), "--json", "--no-png", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_counts_and_sizes_are_those_of_the_files_written(lab, capsys):
    cfg, written = lab
    card = card_json(capsys, cfg, "pets")
    assert card["classes"] == ["cat", "dog", "emu"]
    assert card["train"] == UNEVEN_TRAIN
    assert card["test"] == {"cat": 2, "dog": 1, "emu": 0}
    assert (card["train_images"], card["test_images"]) == (11, sum(UNEVEN_TEST.values()))
    assert card["per_class"] == {"min": 1, "median": 3, "max": 7, "imbalance": 7.0}
    z = card["sizes"]
    widths, heights = [w for w, _ in written], [h for _, h in written]
    assert (z["width"]["min"], z["width"]["max"]) == (min(widths), max(widths))
    assert (z["height"]["min"], z["height"]["max"]) == (min(heights), max(heights))
    common, n = Counter(written).most_common(1)[0]
    assert z["distinct"] == len(set(written)) and z["most_common"] == list(common)
    assert z["most_common_share"] == pytest.approx(n / len(written), abs=1e-4)
    assert (z["from"], z["files"], z["read"], z["sampled"]) == ("headers", 14, 14, False)
    assert card["image_size"] == 24 and card["dataset"] == "imagefolder"
    # two images of each of the two largest classes, the first files in name order
    assert [(s["class"], s["from"].rsplit("/", 2)[-2:]) for s in card["samples"]] == [
        ("cat", ["cat", "0.png"]), ("cat", ["cat", "1.jpg"]),
        ("dog", ["dog", "0.png"]), ("dog", ["dog", "1.jpg"])]


def test_the_terminal_card_has_each_class_with_its_counts_and_a_png(lab, capsys):
    cfg, _ = lab
    assert main(["dataset", "pets", "--config", str(cfg), "--width", "100"]) == 0
    out = capsys.readouterr().out
    for name, n in UNEVEN_TRAIN.items():
        test = UNEVEN_TEST.get(name, 0)
        assert re.search(rf"^{name}\s+[█▏▎▍▌▋▊▉]+\s+{n}\s+{test}\s*$", out, re.M), out
    assert "imbalance 7x" in out and "3 distinct sizes" in out
    assert "resized to 24x24" in out
    assert max(map(len, out.splitlines())) <= 100
    png = cfg.parent / "reports" / "dataset-pets.png"
    assert out.rstrip().splitlines()[-1] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 400


def test_out_and_no_png(lab, capsys, tmp_path):
    cfg, _ = lab
    assert main(["dataset", "pets", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(str(tmp_path / "o" / "dataset-pets.png"))
    assert (tmp_path / "o" / "dataset-pets.png").exists()
    card_json(capsys, cfg, "pets")
    assert not (cfg.parent / "reports").exists()


def test_ansi_output_is_coloured_half_blocks(lab, capsys):
    cfg, _ = lab
    assert main(["dataset", "pets", "--config", str(cfg), "--ansi", "--width", "80",
                 "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[38;2;" in out and "▀" in out


@pytest.mark.parametrize("override, message", [
    ("data_dir=nowhere", "image folder not found in "),
    ("dataset=cifar10", "the card never downloads it"),
])
def test_a_missing_dataset_is_one_line_and_exit_2(lab, capsys, override, message):
    cfg, _ = lab
    args = ["dataset", "pets", "--config", str(cfg), "--set", override]
    if override.startswith("dataset"):
        args += ["--set", "data_dir=nowhere"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_an_unknown_experiment_is_one_line(lab, capsys):
    cfg, _ = lab
    assert main(["dataset", "pest", "--config", str(cfg)]) == 2
    assert "no experiment named 'pest'" in capsys.readouterr().err


def test_sizes_of_a_large_folder_come_from_a_fixed_sample(lab, capsys, monkeypatch):
    cfg, _ = lab
    monkeypatch.setattr(datacard, "SAMPLE_OVER", 10)
    monkeypatch.setattr(datacard, "SAMPLE_N", 5)
    first = card_json(capsys, cfg, "pets")["sizes"]
    assert (first["files"], first["read"], first["sampled"]) == (14, 5, True)
    assert card_json(capsys, cfg, "pets")["sizes"] == first
    assert main(["dataset", "pets", "--config", str(cfg), "--no-png", "--width", "120"]) == 0
    assert "headers of a random 5 of 14 files" in capsys.readouterr().out


def test_a_file_that_is_no_image_is_a_note(lab, capsys):
    cfg, _ = lab
    (cfg.parent / "pets" / "train" / "dog" / "broken.jpg").write_text("not an image")
    card = card_json(capsys, cfg, "pets")
    assert card["train"]["dog"] == 4 and card["sizes"]["read"] == 14
    assert any("1 file(s) unreadable" in n and "broken.jpg" in n for n in card["notes"])


def test_a_test_class_train_lacks_is_a_note(lab, capsys):
    cfg, _ = lab
    (cfg.parent / "pets" / "test" / "yak").mkdir()
    card = card_json(capsys, cfg, "pets")
    assert any("train/ lacks: yak" in n for n in card["notes"])


def test_cifar_pickles_counted_by_their_labels(lab, capsys):
    cfg, _ = lab
    batches = write_cifar(cfg.parent / "cifar")
    card = card_json(capsys, cfg, "cifar")
    labels = [datacard_labels(batches / f"data_batch_{i}") for i in range(1, 6)]
    assert list(card["train"].values()) == np.bincount(np.concatenate(labels),
                                                       minlength=10).tolist()
    assert card["test_images"] == 10 and card["source"] == f"CIFAR-10 from {batches}"
    assert card["sizes"]["most_common"] == [32, 32] and card["sizes"]["from"] == "arrays"
    assert any("limit_train = 50" in n for n in card["notes"])
    assert len(card["samples"]) == 4


def datacard_labels(path):
    import pickle

    with open(path, "rb") as f:
        return np.asarray(pickle.load(f)[b"labels"])


def test_hdf5_and_synthetic(lab, capsys):
    cfg, _ = lab
    write_h5(cfg.parent / "m.h5", size=12)
    card = card_json(capsys, cfg, "h5")
    assert card["train"] == {str(c): 12 for c in range(4)}
    assert card["test"] == {str(c): 6 for c in range(4)} and card["test_split"] == "val"
    assert card["sizes"]["most_common"] == [12, 12]
    assert any("13 unlabelled test images" in n for n in card["notes"])
    glyphs = card_json(capsys, cfg, "glyphs")
    assert glyphs["train_images"] == 40 and set(glyphs["train"].values()) == {4}
    assert glyphs["sizes"]["most_common"] == [16, 16]
    assert [s["class"] for s in glyphs["samples"]] == ["ell", "ell", "eff", "eff"]


def test_many_classes_draw_the_largest_and_smallest():
    n = datacard.MAX_BARS + 15
    card = datacard.Card("imagefolder", "x", "x", tuple(f"c{i:03d}" for i in range(n)),
                         list(range(1, n + 1)), [0] * n, {})
    shown, left_out = datacard.shown_classes(card)
    assert left_out == 15 and len(shown) == datacard.MAX_BARS
    assert shown[0] == n - 1 and shown[-1] == 0
    from rich.console import Console
    console = Console(width=90, record=True)
    console.print(datacard.bar_chart(card, 90))
    text = console.export_text()
    assert "15 more classes" in text and "c000" in text and "c040" not in text and "c045" in text


def test_bars_are_proportional_in_eighths():
    assert datacard.bar(7, 7, 10) == "█" * 10
    assert datacard.bar(1, 8, 4) == "▌"
    assert datacard.bar(1, 1000, 10) == "▏"  # any image at all shows
    assert datacard.bar(0, 7, 10) == ""


def test_half_blocks_draw_two_rows_a_line():
    a = np.zeros((3, 2, 3), dtype=np.uint8)
    a[0, 0], a[1, 0], a[2, 1] = (255, 0, 0), (0, 0, 255), (0, 255, 0)
    text = half_blocks(a)
    assert text.plain == "▀▀\n▀▀\n"
    styles = [str(s.style) for s in text.spans]
    assert styles[0] == "rgb(255,0,0) on rgb(0,0,255)"
    assert styles[3] == "rgb(0,255,0) on rgb(0,255,0)"  # an odd last row over itself
