"""Tests for digit_images.py against the real MNIST test set.

The preprocessing tests draw MNIST test digits six times larger as dark ink on white paper,
at random places on a 200x200 page, and check that load_digit_image recovers the 28x28
original. The recognition test trains ConvNetSimple for one epoch in-process and classifies
200 such pages. Training dominates this file's runtime: in three runs on a 2-core CPU that
other jobs were also using, it took 125 s, 383 s and 453 s, and the other tests about 15 s.
"""

import csv
import math
import os
import random
import re
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import common as c
import digit_images
import pytorch_mnist_convnet as convnet
from checkpoints import save_checkpoint
from errors import UsageError

PAGE_SIZE = 200
RENDER_SCALE = 6

# Recovering a digit from a large rendering moves it by at most one pixel, because MNIST's
# centre of mass lies anywhere within half a pixel of the centre and the recovered digit is
# placed by whole pixels. The "aligned" bounds allow that shift. Pixel differences are in
# gray levels of 255. Measured on the first 200 test digits without alignment, the mean
# difference was 4.1 and the mean correlation 0.977. The worst aligned digit had a difference
# of 11.6, and the worst aligned correlation was 0.878.
ROUND_TRIP_DIGITS = 20
MEAN_DIFFERENCE_LIMIT = 6.0
MEAN_CORRELATION_MINIMUM = 0.96
ALIGNED_DIFFERENCE_LIMIT = 15.0
ALIGNED_CORRELATION_MINIMUM = 0.85

RECOGNITION_DIGITS = 200
RECOGNITION_MINIMUM = 0.95

ACCURACY_COLOUR = (31, 119, 180)
LOSS_COLOUR = (214, 39, 40)

HISTORY_ONE_EPOCH = [{"epoch": 1, "accuracy": 0.9630, "mean_loss": 0.3473, "seconds": 61.25}]
HISTORY_FIVE_EPOCHS = [
    {"epoch": 1, "accuracy": 0.9630, "mean_loss": 0.3473, "seconds": 61.25},
    {"epoch": 2, "accuracy": 0.9752, "mean_loss": 0.0911, "seconds": 60.5},
    {"epoch": 3, "accuracy": 0.9801, "mean_loss": 0.0654, "seconds": 59.875},
    {"epoch": 4, "accuracy": 0.9823, "mean_loss": 0.0527, "seconds": 60.0},
    {"epoch": 5, "accuracy": 0.9838, "mean_loss": 0.0443, "seconds": 60.125},
]


@pytest.fixture(scope="module")
def mnist_test_set():
    return c.get_dataset(train=False)


@pytest.fixture(scope="module")
def trained_network():
    """ConvNetSimple after one epoch on the 60,000 training images, and its history."""
    torch.manual_seed(0)
    model = convnet.ConvNetSimple()
    optimizer = convnet.build_optimizer(model, {"lr": 0.1, "wd": 0.0})
    loss_function = convnet.build_loss_function({"net": "simple"})
    history = c.train_network(model, c.get_train_loader(), 1, loss_function, optimizer, quiet=True)
    return model, history


def render_on_paper(pixels, rng):
    """Draw an MNIST digit RENDER_SCALE times larger, dark on white, at a random place on the page.

    The digit stays inside the page.
    """
    ink_box = Image.fromarray(pixels.numpy()).getbbox()
    digit = Image.fromarray(255 - pixels.numpy()).crop(ink_box)
    large = digit.resize((digit.width * RENDER_SCALE, digit.height * RENDER_SCALE), Image.BICUBIC)

    page = Image.new("L", (PAGE_SIZE, PAGE_SIZE), 255)
    left = rng.randint(0, PAGE_SIZE - large.width)
    top = rng.randint(0, PAGE_SIZE - large.height)
    page.paste(large, (left, top))
    return page


def correlation(first, second):
    return float(np.corrcoef(first.flatten().numpy(), second.flatten().numpy())[0, 1])


def aligned_comparison(recovered, original):
    """Return (mean absolute difference, correlation) for the best shift of up to one pixel."""
    best = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = torch.roll(recovered, (dy, dx), dims=(0, 1))
            difference = (shifted - original).abs().mean().item()
            if best is None or difference < best[0]:
                best = (difference, correlation(shifted, original))
    return best


def check_png(path, expected_size):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == expected_size
        image.load()


def expected_grid_size(digit_count):
    rows = math.ceil(digit_count / digit_images.GRID_COLUMNS)
    width = 2 * digit_images.GRID_MARGIN + digit_images.GRID_COLUMNS * digit_images.CELL_WIDTH
    height = 2 * digit_images.GRID_MARGIN + digit_images.TITLE_HEIGHT + rows * digit_images.CELL_HEIGHT
    return width, height


# Error grid


def test_error_grid_layout_and_tiles(mnist_test_set, tmp_path):
    images = mnist_test_set.data[:23]
    labels = mnist_test_set.targets[:23]
    predictions = (labels + 1) % 10
    path = tmp_path / "errors.png"

    drawn = digit_images.save_error_grid(images, labels, predictions, path)

    assert drawn == 23
    check_png(path, expected_grid_size(23))
    assert sorted(item.name for item in tmp_path.iterdir()) == ["errors.png"]

    # The 13th digit sits in row 1, column 2 (counting from 0), scaled up with nearest-neighbour
    # sampling.
    with Image.open(path) as page:
        left = digit_images.GRID_MARGIN + 2 * digit_images.CELL_WIDTH
        top = digit_images.GRID_MARGIN + digit_images.TITLE_HEIGHT + digit_images.CELL_HEIGHT
        tile_width = 28 * digit_images.DIGIT_SCALE
        tile = np.asarray(page.convert("L").crop((left, top, left + tile_width, top + tile_width)))
    expected = images[12].numpy().repeat(digit_images.DIGIT_SCALE, 0).repeat(digit_images.DIGIT_SCALE, 1)
    assert np.array_equal(tile, expected)


def test_error_grid_stops_at_max_count(mnist_test_set, tmp_path):
    images = mnist_test_set.data[:150]
    labels = mnist_test_set.targets[:150]
    path = tmp_path / "errors.png"

    drawn = digit_images.save_error_grid(images, labels, labels, path, max_count=100)

    assert drawn == 100
    check_png(path, expected_grid_size(100))


def test_error_grid_without_errors(tmp_path):
    path = tmp_path / "errors.png"
    empty = torch.empty(0, dtype=torch.int64)

    drawn = digit_images.save_error_grid(torch.empty(0, 28, 28, dtype=torch.uint8), empty, empty, path)

    assert drawn == 0
    check_png(path, expected_grid_size(0))


def test_error_grid_rejects_mismatched_input(mnist_test_set, tmp_path):
    path = tmp_path / "errors.png"

    images = mnist_test_set.data[:4]
    labels = mnist_test_set.targets[:4]

    with pytest.raises(UsageError, match="3 labels"):
        digit_images.save_error_grid(images, labels[:3], labels, path)
    with pytest.raises(UsageError, match="uint8 images"):
        digit_images.save_error_grid(images.float(), labels, labels, path)
    assert not path.exists()


def test_collect_errors_matches_full_batch(mnist_test_set):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    all_images, _ = next(iter(c.get_test_loader(10000)))

    indices, predictions = digit_images.collect_errors(model, c.get_test_loader(1000))

    with torch.no_grad():
        expected_predictions = model(all_images).argmax(dim=1)
    expected_indices = (expected_predictions != mnist_test_set.targets).nonzero().flatten()
    assert indices.dtype == torch.int64
    assert indices.device.type == "cpu"
    assert torch.equal(indices, expected_indices)
    assert torch.equal(predictions, expected_predictions[expected_indices])
    assert not model.training


def test_collect_errors_rejects_shuffled_loader(mnist_test_set):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    with pytest.raises(UsageError, match="file order"):
        digit_images.collect_errors(model, c.get_loader(mnist_test_set, 1000, shuffle=True))


def test_error_grid_of_trained_network(trained_network, mnist_test_set, tmp_path):
    model, history = trained_network
    path = tmp_path / "errors.png"

    indices, predictions = digit_images.collect_errors(model, c.get_test_loader(1000))
    drawn = digit_images.save_error_grid(
        mnist_test_set.data[indices], mnist_test_set.targets[indices], predictions, path, max_count=100
    )

    assert len(indices) == round((1 - history[-1]["accuracy"]) * 10000)
    assert drawn == min(100, len(indices))
    assert torch.all(predictions != mnist_test_set.targets[indices])
    check_png(path, expected_grid_size(drawn))


# Learning curve and metrics


@pytest.mark.parametrize("history", [HISTORY_ONE_EPOCH, HISTORY_FIVE_EPOCHS], ids=["1 epoch", "5 epochs"])
def test_learning_curve_png(history, tmp_path):
    path = tmp_path / "curve.png"
    expected_size = (digit_images.CURVE_WIDTH, 2 * digit_images.PANEL_HEIGHT)

    size = digit_images.save_learning_curve(history, path)

    assert size == expected_size
    check_png(path, expected_size)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    top_half = pixels[: digit_images.PANEL_HEIGHT]
    bottom_half = pixels[digit_images.PANEL_HEIGHT :]
    assert (top_half == ACCURACY_COLOUR).all(axis=2).sum() > 10
    assert (bottom_half == LOSS_COLOUR).all(axis=2).sum() > 10


def test_learning_curve_many_epochs(tmp_path):
    history = [
        {"epoch": epoch, "accuracy": 0.9 + epoch / 1000, "mean_loss": 1 / epoch, "seconds": 1.0}
        for epoch in range(1, 61)
    ]

    size = digit_images.save_learning_curve(history, tmp_path / "curve.png")

    check_png(tmp_path / "curve.png", size)
    assert digit_images.epoch_ticks(1, 60) == [10, 20, 30, 40, 50, 60]


def test_learning_curve_of_trained_network(trained_network, tmp_path):
    _, history = trained_network

    size = digit_images.save_learning_curve(history, tmp_path / "curve.png")

    check_png(tmp_path / "curve.png", size)


def test_learning_curve_rejects_empty_history(tmp_path):
    with pytest.raises(UsageError, match="history is empty"):
        digit_images.save_learning_curve([], tmp_path / "curve.png")


@pytest.mark.parametrize("history", [HISTORY_ONE_EPOCH, HISTORY_FIVE_EPOCHS], ids=["1 epoch", "5 epochs"])
def test_metrics_csv_rows(history, tmp_path):
    path = tmp_path / "metrics.csv"

    digit_images.write_metrics_csv(history, path)

    with open(path, newline="", encoding="utf-8") as file:
        lines = file.read().splitlines()
    assert lines[0] == "epoch,accuracy,mean_loss,seconds"
    assert len(lines) == len(history) + 1

    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    for row, record in zip(rows, history):
        assert int(row["epoch"]) == record["epoch"]
        assert float(row["accuracy"]) == record["accuracy"]
        assert float(row["mean_loss"]) == record["mean_loss"]
        assert float(row["seconds"]) == record["seconds"]


def write_error_grid(path):
    images = torch.zeros(1, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([3])
    digit_images.save_error_grid(images, labels, labels, path)


def write_learning_curve(path):
    digit_images.save_learning_curve(HISTORY_ONE_EPOCH, path)


def write_metrics(path):
    digit_images.write_metrics_csv(HISTORY_ONE_EPOCH, path)


@pytest.mark.parametrize("write", [write_error_grid, write_learning_curve, write_metrics])
def test_writers_reject_bad_paths(write, tmp_path):
    (tmp_path / "a_file").write_text("not a folder\n")
    bad_paths = [
        tmp_path / "missing" / "out.png",
        tmp_path / "a_file" / "out.png",
        tmp_path,
    ]

    for path in bad_paths:
        with pytest.raises(UsageError) as error:
            write(path)
        assert str(path) in str(error.value)

    assert sorted(item.name for item in tmp_path.iterdir()) == ["a_file"]


def test_writers_replace_existing_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old contents\n")

    digit_images.write_metrics_csv(HISTORY_FIVE_EPOCHS, path)

    assert path.read_text().startswith("epoch,")
    assert sorted(item.name for item in tmp_path.iterdir()) == ["metrics.csv"]


# Reading your own digits


def test_load_recovers_rendered_test_digits(mnist_test_set, tmp_path):
    rng = random.Random(1)
    differences = []
    correlations = []

    for index in range(ROUND_TRIP_DIGITS):
        path = tmp_path / f"digit-{index}.png"
        render_on_paper(mnist_test_set.data[index], rng).save(path)
        original = mnist_test_set.data[index].float()

        recovered = digit_images.load_digit_image(path)

        assert recovered.dtype == torch.uint8
        assert recovered.shape == (28, 28)
        aligned_difference, aligned_correlation = aligned_comparison(recovered.float(), original)
        assert aligned_difference < ALIGNED_DIFFERENCE_LIMIT, f"test digit {index}"
        assert aligned_correlation > ALIGNED_CORRELATION_MINIMUM, f"test digit {index}"
        differences.append((recovered.float() - original).abs().mean().item())
        correlations.append(correlation(recovered.float(), original))

    assert np.mean(differences) < MEAN_DIFFERENCE_LIMIT
    assert np.mean(correlations) > MEAN_CORRELATION_MINIMUM


def test_load_centres_mass_in_frame(mnist_test_set, tmp_path):
    rng = random.Random(2)
    path = tmp_path / "digit.png"
    render_on_paper(mnist_test_set.data[5], rng).save(path)

    recovered = digit_images.load_digit_image(path).float()

    positions = torch.arange(28, dtype=torch.float32)
    mass = recovered.sum()
    centre_row = (recovered.sum(dim=1) * positions).sum() / mass
    centre_column = (recovered.sum(dim=0) * positions).sum() / mass
    assert abs(centre_row - 14) <= 0.5
    assert abs(centre_column - 14) <= 0.5


def test_load_keeps_mnist_digit_unchanged(mnist_test_set, tmp_path):
    path = tmp_path / "mnist.png"
    Image.fromarray(mnist_test_set.data[0].numpy()).save(path)

    recovered = digit_images.load_digit_image(path).float()

    assert (recovered - mnist_test_set.data[0].float()).abs().mean() < 3


def save_rgba(page, path):
    """Black ink whose opacity is the ink intensity, on a fully transparent black background."""
    ink = 255 - np.asarray(page)
    rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)
    rgba[..., 3] = ink
    Image.fromarray(rgba).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def save_palette(page, path):
    page.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def save_jpeg(page, path):
    page.convert("RGB").save(path.with_suffix(".jpg"), quality=85)
    return path.with_suffix(".jpg")


def save_bilevel(page, path):
    page.convert("1", dither=Image.Dither.NONE).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def save_sixteen_bit(page, path):
    levels = np.asarray(page).astype(np.uint16) * 257
    Image.fromarray(levels).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def save_light_on_dark(page, path):
    Image.fromarray(255 - np.asarray(page)).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


@pytest.mark.parametrize(
    "save",
    [save_rgba, save_palette, save_jpeg, save_bilevel, save_sixteen_bit, save_light_on_dark],
    ids=["RGBA", "P", "JPEG", "1", "I;16", "light on dark"],
)
def test_load_accepts_image_modes(save, mnist_test_set, tmp_path):
    rng = random.Random(3)
    original = mnist_test_set.data[0].float()
    path = save(render_on_paper(mnist_test_set.data[0], rng), tmp_path / "digit")

    recovered = digit_images.load_digit_image(path)

    assert recovered.dtype == torch.uint8
    assert recovered.shape == (28, 28)
    aligned_difference, aligned_correlation = aligned_comparison(recovered.float(), original)
    assert aligned_difference < ALIGNED_DIFFERENCE_LIMIT
    assert aligned_correlation > ALIGNED_CORRELATION_MINIMUM


def write_white_page(path):
    Image.new("L", (100, 100), 255).save(path)


def write_grey_noise(path):
    levels = np.random.default_rng(0).integers(120, 140, size=(100, 100), dtype=np.uint8)
    Image.fromarray(levels).save(path)


def write_single_speck(path):
    page = Image.new("L", (100, 100), 255)
    page.putpixel((40, 60), 0)
    page.save(path)


def write_text(path):
    path.write_text("this is not an image\n")


def write_nothing(path):
    path.write_bytes(b"")


def write_truncated_png(path):
    write_single_speck(path)
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (write_white_page, "shows no digit"),
        (write_grey_noise, "shows no digit"),
        (write_single_speck, "isolated specks"),
        (write_text, "not an image"),
        (write_nothing, "empty"),
        (write_truncated_png, "Cannot read"),
        (None, "not found"),
    ],
    ids=[
        "white page",
        "grey noise",
        "single speck",
        "text file",
        "empty file",
        "truncated PNG",
        "missing file",
    ],
)
def test_load_rejects_bad_files(write, message, tmp_path):
    path = tmp_path / "digit.png"
    if write is not None:
        write(path)

    with pytest.raises(UsageError, match=message) as error:
        digit_images.load_digit_image(path)
    assert str(path) in str(error.value)


def test_load_rejects_folder(tmp_path):
    with pytest.raises(UsageError, match="not a file"):
        digit_images.load_digit_image(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_load_rejects_named_pipe(tmp_path):
    path = tmp_path / "digit.png"
    os.mkfifo(path)

    with pytest.raises(UsageError, match="not a regular file but a named pipe") as error:
        digit_images.load_digit_image(path)
    assert str(path) in str(error.value)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_blank_png(path, width, height):
    """Write a valid 1-bit PNG of white pixels that is small on disk.

    Its identical rows compress to a few bytes each, so 200 million pixels take about 40 kB.
    """
    row = b"\x00" + b"\xff" * math.ceil(width / 8)
    compressor = zlib.compressobj(9)
    image_data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    content = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", image_data)
    path.write_bytes(content + png_chunk(b"IEND", b""))


# Pillow warns above Image.MAX_IMAGE_PIXELS pixels (89,478,485 by default) and raises above
# twice that.
@pytest.mark.parametrize(
    ("width", "height", "pixel_count"),
    [(10000, 10000, "100,000,000"), (20000, 10000, "200,000,000")],
    ids=["warning", "error"],
)
def test_load_rejects_too_many_pixels(width, height, pixel_count, tmp_path):
    path = tmp_path / "huge.png"
    write_blank_png(path, width, height)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UsageError) as error:
            digit_images.load_digit_image(path)

    message = str(error.value)
    assert f"The image {path} has {pixel_count} pixels" in message
    assert f"the limit is {Image.MAX_IMAGE_PIXELS:,}" in message
    assert "Scale the image down" in message
    assert [warning.message for warning in caught] == []


def test_load_reads_pixel_limit_at_call(tmp_path, monkeypatch):
    path = tmp_path / "digit.png"
    write_blank_png(path, 200, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)

    with pytest.raises(UsageError, match=r"has 20,000 pixels, and the limit is 10,000 "):
        digit_images.load_digit_image(path)


def test_prepare_matches_test_loader(mnist_test_set):
    images, _ = next(iter(c.get_test_loader(10)))

    for index in range(10):
        prepared = digit_images.prepare_for_network(mnist_test_set.data[index])
        assert prepared.dtype == torch.float32
        assert prepared.shape == (1, 1, 28, 28)
        assert torch.equal(prepared, images[index : index + 1])


def test_prepare_rejects_wrong_shape():
    with pytest.raises(UsageError, match=r"\[28, 28\]"):
        digit_images.prepare_for_network(torch.zeros(1, 28, 28, dtype=torch.uint8))


def test_predict_recognises_rendered_digits(trained_network, mnist_test_set, tmp_path, capsys):
    model, _ = trained_network
    rng = random.Random(4)
    paths = []
    for index in range(RECOGNITION_DIGITS):
        path = tmp_path / f"digit-{index:03d}.png"
        render_on_paper(mnist_test_set.data[index], rng).save(path)
        paths.append(path)

    results = digit_images.predict_digits(model, paths)

    labels = mnist_test_set.targets[:RECOGNITION_DIGITS].tolist()
    correct = sum(digit == label for (_, digit, _), label in zip(results, labels))
    assert correct >= RECOGNITION_MINIMUM * RECOGNITION_DIGITS, f"{correct} of {RECOGNITION_DIGITS} correct"

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == RECOGNITION_DIGITS
    score_pattern = r"[01]\.\d{3}"
    line_pattern = re.compile(
        rf"^.+\.png: \d \(top 3: \d {score_pattern}, \d {score_pattern}, \d {score_pattern}\)$"
    )
    for line, (path, digit, top) in zip(lines, results):
        assert line_pattern.match(line), line
        assert line.startswith(f"{path}: {digit} ")
        assert top[0][0] == digit
        assert top[0][1] >= top[1][1] >= top[2][1]
        assert sum(score for _, score in top) <= 1 + 1e-6


def test_predict_saves_network_inputs(trained_network, mnist_test_set, tmp_path):
    model, _ = trained_network
    rng = random.Random(5)
    path = tmp_path / "seven.png"
    render_on_paper(mnist_test_set.data[0], rng).save(path)
    save_dir = tmp_path / "seen" / "by_network"

    [(returned_path, digit, _)] = digit_images.predict_digits(model, path, save_dir=save_dir)

    saved = save_dir / "seven-28x28.png"
    check_png(saved, (28, 28))
    with Image.open(saved) as image:
        saved_pixels = torch.from_numpy(np.asarray(image.convert("L")).copy())
    assert torch.equal(saved_pixels, digit_images.load_digit_image(path))
    assert returned_path == path
    assert digit == 7


def test_predict_rejects_bad_file_before_printing(trained_network, mnist_test_set, tmp_path, capsys):
    model, _ = trained_network
    good = tmp_path / "good.png"
    render_on_paper(mnist_test_set.data[0], random.Random(6)).save(good)
    missing = tmp_path / "missing.png"

    with pytest.raises(UsageError, match="missing.png"):
        digit_images.predict_digits(model, [good, missing])
    assert capsys.readouterr().out == ""


def test_eval_checkpoint_predicts_rendered_digits(trained_network, mnist_test_set, tmp_path, capsys):
    """The command line path: a saved convnet checkpoint classifies digits drawn on paper."""
    model, history = trained_network
    config = {
        "script": convnet.SCRIPT.name,
        "net": "simple",
        "epochs": 1,
        "lr": 0.1,
        "wd": 0.0,
        "batch_size": c.BATCH_SIZE,
        "seed": 0,
        "extend_data": False,
        "channels_last": False,
    }
    checkpoint_path = tmp_path / "simple.pt"
    optimizer = convnet.build_optimizer(model, config)
    save_checkpoint(checkpoint_path, model, optimizer, config, history, torch.device("cpu"))

    rng = random.Random(6)
    paths = []
    for index in range(RECOGNITION_DIGITS):
        path = tmp_path / f"paper-{index:03d}.png"
        render_on_paper(mnist_test_set.data[index], rng).save(path)
        paths.append(str(path))

    convnet.main(["--eval", str(checkpoint_path), "--device", "cpu", "--predict", *paths])

    predictions = {}
    for line in capsys.readouterr().out.splitlines():
        match = re.match(r"^(.+\.png): (\d) \(top 3:", line)
        if match:
            predictions[match.group(1)] = int(match.group(2))
    labels = mnist_test_set.targets[:RECOGNITION_DIGITS].tolist()
    correct = sum(predictions.get(path) == label for path, label in zip(paths, labels))

    assert len(predictions) == RECOGNITION_DIGITS
    assert correct >= RECOGNITION_MINIMUM * RECOGNITION_DIGITS, f"{correct} of {RECOGNITION_DIGITS} correct"


def test_save_inputs_numbers_taken_names(mnist_test_set, tmp_path):
    rng = random.Random(8)
    paths = [tmp_path / "a" / "7.png", tmp_path / "b" / "7.png", tmp_path / "c" / "7-2.png"]
    for path in paths:
        path.parent.mkdir()
        render_on_paper(mnist_test_set.data[0], rng).save(path)
    save_dir = tmp_path / "seen"

    digit_images.predict_digits(convnet.ConvNetSimple(), paths, save_dir=save_dir)

    saved_names = sorted(path.name for path in save_dir.iterdir())
    assert saved_names == ["7-2-2-28x28.png", "7-2-28x28.png", "7-28x28.png"]


def test_save_inputs_keeps_input_images(mnist_test_set, tmp_path, capsys):
    rng = random.Random(9)
    first_image = tmp_path / "7.png"
    second_image = tmp_path / "7-28x28.png"
    render_on_paper(mnist_test_set.data[0], rng).save(first_image)
    render_on_paper(mnist_test_set.data[1], rng).save(second_image)
    second_content = second_image.read_bytes()

    with pytest.raises(UsageError) as error:
        digit_images.predict_digits(convnet.ConvNetSimple(), [first_image, second_image], save_dir=tmp_path)

    message = str(error.value)
    assert f"Saving the 28x28 input of {first_image} as {second_image}" in message
    assert f"would replace the input image {second_image}" in message
    assert second_image.read_bytes() == second_content
    assert sorted(path.name for path in tmp_path.iterdir()) == ["7-28x28.png", "7.png"]
    assert capsys.readouterr().out == ""


def test_save_inputs_keeps_repeated_stems(mnist_test_set, tmp_path):
    first_folder = tmp_path / "a"
    second_folder = tmp_path / "b"
    first_folder.mkdir()
    second_folder.mkdir()
    rng = random.Random(7)
    paths = [first_folder / "seven.png", second_folder / "seven.png"]
    for path in paths:
        render_on_paper(mnist_test_set.data[0], rng).save(path)
    save_dir = tmp_path / "seen"

    model = convnet.ConvNetSimple()
    digit_images.predict_digits(model, paths, save_dir=save_dir)

    check_png(save_dir / "seven-28x28.png", (28, 28))
    check_png(save_dir / "seven-2-28x28.png", (28, 28))
