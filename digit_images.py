"""Pictures in and out of the MNIST networks: error grids, learning curves and your own digits.

    >>> import digit_images
    >>> digit_images.predict_digits(model, ["my_digit.png"])
    my_digit.png: 7 (top 3: 7 0.981, 1 0.012, 9 0.004)

load_digit_image turns a photo or drawing of one digit into a 28x28 image prepared the way
MNIST's were. The digit is white on black, its longer side is scaled to 20 pixels, and the
centre of mass of the pixel intensities is moved to the centre of the frame. Every file is
first written to a temporary file in the target folder and then renamed over the target, so
a reader never sees a half-written file.
"""

import csv
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

import common as c
from atomic_files import write_atomically
from errors import UsageError, require_regular_file

IMAGE_WIDTH = 28

# MNIST digits were scaled so that the longer side of their bounding box is 20 pixels, then
# moved so that the centre of mass of the intensities lies at pixel index 14 (row and column)
# of the 28x28 frame. On the 10,000 test images it lies between 13.5 and 14.5.
DIGIT_BOX = 20
CENTRE_INDEX = 14

# Brightness levels (of 255) after inversion and contrast stretching. A pixel brighter than
# INK_THRESHOLD is ink. An image whose brightest pixel is less than MIN_CONTRAST above its
# border is blank.
INK_THRESHOLD = 20
MIN_CONTRAST = 40

# Text size in pixels. ImageFont.load_default draws Pillow's built-in FreeType font, which
# the text anchors ("mt", "rm") need. At its default size of 10 the letters run together.
FONT_SIZE = 12

# Error grid layout, in pixels: each digit is scaled up DIGIT_SCALE times, with a caption
# line under it.
GRID_COLUMNS = 10
DIGIT_SCALE = 2
GRID_MARGIN = 10
TITLE_HEIGHT = 20
CAPTION_HEIGHT = 14
CELL_WIDTH = IMAGE_WIDTH * DIGIT_SCALE + 8
CELL_HEIGHT = IMAGE_WIDTH * DIGIT_SCALE + CAPTION_HEIGHT + 6

# Learning curve layout, in pixels: two panels stacked, accuracy above and loss below. The
# plot area of each panel is inset by the PLOT_ margins, which hold the title and the labels.
CURVE_WIDTH = 640
PANEL_HEIGHT = 260
PLOT_LEFT = 64
PLOT_RIGHT = 24
PLOT_TOP = 30
PLOT_BOTTOM = 42
PLOT_PADDING = 12
MAX_EPOCH_TICKS = 12

METRICS_COLUMNS = ["epoch", "accuracy", "mean_loss", "seconds"]

# The pixel count in Pillow's decompression bomb warning and error. In Pillow 13.0 both
# messages start "Image size (N pixels) exceeds limit of M pixels".
PILLOW_PIXEL_COUNT = re.compile(r"Image size \((\d+) pixels\)")


# Writing files


def save_png(image, path):
    """Save a PIL image as PNG at path, atomically."""
    write_atomically(path, lambda file: image.save(file, format="PNG"))


# Error grid


def error_grid_size(digit_count):
    """Return the (width, height) of an error grid showing digit_count digits."""
    rows = math.ceil(digit_count / GRID_COLUMNS)
    width = 2 * GRID_MARGIN + GRID_COLUMNS * CELL_WIDTH
    height = 2 * GRID_MARGIN + TITLE_HEIGHT + rows * CELL_HEIGHT
    return width, height


def save_error_grid(images, labels, predictions, path, max_count=100):
    """Draw misclassified digits as a PNG grid, each captioned "predicted (true label)".

    images: uint8 [N, 28, 28] raw MNIST pixels, white digit on black. labels, predictions: N
    integers. The first max_count digits are drawn, and the title gives how many that is of N.
    Returns the number of digits drawn.
    """
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels).flatten()
    predictions = torch.as_tensor(predictions).flatten()
    validate_error_grid_input(images, labels, predictions, max_count)

    total_count = len(images)
    drawn_count = min(total_count, max_count)
    page = Image.new("L", error_grid_size(drawn_count), color=255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=FONT_SIZE)

    title = f"{drawn_count} of {total_count} misclassified digits, captioned: predicted (true label)"
    draw.text((GRID_MARGIN, GRID_MARGIN), title, fill=0, font=font)

    for position in range(drawn_count):
        row, column = divmod(position, GRID_COLUMNS)
        left = GRID_MARGIN + column * CELL_WIDTH
        top = GRID_MARGIN + TITLE_HEIGHT + row * CELL_HEIGHT
        tile_size = IMAGE_WIDTH * DIGIT_SCALE

        digit = Image.fromarray(images[position].cpu().numpy())
        page.paste(digit.resize((tile_size, tile_size), Image.NEAREST), (left, top))

        caption = f"{int(predictions[position])} (true {int(labels[position])})"
        draw.text((left, top + tile_size + 2), caption, fill=0, font=font)

    save_png(page, path)
    return drawn_count


def validate_error_grid_input(images, labels, predictions, max_count):
    """Raise UsageError unless the arguments of save_error_grid fit together."""
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise UsageError(
            f"The error grid needs uint8 images of shape [N, 28, 28], got {images.dtype} of shape "
            f"{list(images.shape)}. Pass the raw pixels, for example dataset.data[indices]."
        )
    if len(labels) != len(images) or len(predictions) != len(images):
        raise UsageError(
            f"The error grid got {len(images)} images, {len(labels)} labels and "
            f"{len(predictions)} predictions. Pass one label and one prediction per image."
        )
    if max_count < 1:
        raise UsageError(f"max_count must be at least 1, got {max_count}.")


def collect_errors(model, test_loader):
    """Run the model over test_loader and return (indices, predictions) of its mistakes.

    indices point into the loader's dataset, so the loader must not shuffle. Both are int64
    tensors on the CPU. The model is left in eval mode.
    """
    if getattr(test_loader, "shuffle", False):
        raise UsageError("collect_errors needs a loader in file order. Use common.get_test_loader().")

    model.eval()
    wrong_indices = []
    wrong_predictions = []
    offset = 0

    with torch.no_grad():
        for images, labels in test_loader:
            predictions = model(images).argmax(dim=1)
            wrong = (predictions != labels).nonzero().flatten()
            wrong_indices.append((wrong + offset).cpu())
            wrong_predictions.append(predictions[wrong].cpu())
            offset += len(labels)

    if not wrong_indices:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty.clone()
    return torch.cat(wrong_indices), torch.cat(wrong_predictions)


# Learning curve and metrics


def save_learning_curve(history, path):
    """Draw test accuracy and mean training loss per epoch as a two-panel PNG.

    history: the list that common.train_network returns, one dict per epoch. Returns the
    image size (width, height).
    """
    validate_history(history)
    epochs = [record["epoch"] for record in history]
    accuracies = [100 * record["accuracy"] for record in history]
    losses = [record["mean_loss"] for record in history]

    size = (CURVE_WIDTH, 2 * PANEL_HEIGHT)
    page = Image.new("RGB", size, color="white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=FONT_SIZE)

    draw_panel(draw, font, 0, "Test accuracy (%) after each epoch", epochs, accuracies, (31, 119, 180))
    draw_panel(draw, font, PANEL_HEIGHT, "Mean training loss per epoch", epochs, losses, (214, 39, 40))

    save_png(page, path)
    return size


def validate_history(history):
    """Raise UsageError unless history is a non-empty list of epoch records with finite values."""
    if len(history) == 0:
        raise UsageError("The training history is empty: train at least one epoch first.")

    for record in history:
        missing = [key for key in METRICS_COLUMNS if key not in record]
        if missing:
            raise UsageError(
                f"The training history record {record} is missing {', '.join(missing)}. Pass the list "
                f"that common.train_network returns."
            )
        if not all(math.isfinite(record[key]) for key in METRICS_COLUMNS):
            raise UsageError(f"The training history record {record} contains a value that is not finite.")


def draw_panel(draw, font, panel_top, title, epochs, values, colour):
    """Draw one panel: title, axes with tick labels, and the values as a line with dots."""
    plot_left = PLOT_LEFT
    plot_right = CURVE_WIDTH - PLOT_RIGHT
    plot_top = panel_top + PLOT_TOP
    plot_bottom = panel_top + PANEL_HEIGHT - PLOT_BOTTOM

    draw.text(((plot_left + plot_right) / 2, panel_top + 8), title, fill="black", font=font, anchor="mt")

    first_epoch = min(epochs)
    last_epoch = max(epochs)
    if first_epoch == last_epoch:
        first_epoch -= 0.5
        last_epoch += 0.5
    y_ticks = nice_ticks(min(values), max(values))

    def x_of(epoch):
        fraction = (epoch - first_epoch) / (last_epoch - first_epoch)
        return plot_left + PLOT_PADDING + fraction * (plot_right - plot_left - 2 * PLOT_PADDING)

    def y_of(value):
        fraction = (value - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])
        return plot_bottom - fraction * (plot_bottom - plot_top)

    decimals = tick_decimals(y_ticks)
    for tick in y_ticks:
        y = y_of(tick)
        draw.line([(plot_left, y), (plot_right, y)], fill=(225, 225, 225))
        draw.line([(plot_left - 4, y), (plot_left, y)], fill="black")
        draw.text((plot_left - 6, y), f"{tick:.{decimals}f}", fill="black", font=font, anchor="rm")

    for epoch in epoch_ticks(min(epochs), max(epochs)):
        x = x_of(epoch)
        draw.line([(x, plot_bottom), (x, plot_bottom + 4)], fill="black")
        draw.text((x, plot_bottom + 6), str(epoch), fill="black", font=font, anchor="mt")
    draw.text(((plot_left + plot_right) / 2, plot_bottom + 22), "epoch", fill="black", font=font, anchor="mt")

    draw.line([(plot_left, plot_top), (plot_left, plot_bottom), (plot_right, plot_bottom)], fill="black")

    points = [(x_of(epoch), y_of(value)) for epoch, value in zip(epochs, values)]
    if len(points) > 1:
        draw.line(points, fill=colour, width=2)
    for x, y in points:
        draw.ellipse([(x - 3, y - 3), (x + 3, y + 3)], fill=colour)


def nice_ticks(low, high, target_count=5):
    """Return evenly spaced round tick values that cover low..high."""
    if high - low < 1e-9 * max(1.0, abs(high)):
        padding = max(abs(high) * 0.01, 1e-3)
        low -= padding
        high += padding

    step = round_step((high - low) / (target_count - 1))
    first = math.floor(low / step)
    last = math.ceil(high / step)
    return [index * step for index in range(first, last + 1)]


def round_step(minimum_step):
    """Return the smallest step of 1, 2 or 5 times a power of ten that is at least minimum_step."""
    magnitude = 10 ** math.floor(math.log10(minimum_step))
    for factor in (1, 2, 5):
        if factor * magnitude >= minimum_step:
            return factor * magnitude
    return 10 * magnitude


def tick_decimals(ticks):
    """Return how many decimals tell the ticks apart."""
    step = ticks[1] - ticks[0]
    return max(0, -math.floor(math.log10(step) + 1e-9))


def epoch_ticks(first_epoch, last_epoch):
    """Return the epochs to label: every one, or every 2nd, 5th, 10th, ... when there are many."""
    step = 1
    if last_epoch - first_epoch + 1 > MAX_EPOCH_TICKS:
        step = round(round_step((last_epoch - first_epoch) / (MAX_EPOCH_TICKS - 1)))

    first_tick = math.ceil(first_epoch / step) * step
    return list(range(first_tick, last_epoch + 1, step))


def write_metrics_csv(history, path):
    """Write one CSV row per epoch with the columns epoch, accuracy, mean_loss, seconds.

    Floats are written in full (Python's repr), so reading them back gives the same values.
    """
    validate_history(history)

    def write_rows(file):
        writer = csv.writer(file)
        writer.writerow(METRICS_COLUMNS)
        for record in history:
            writer.writerow([record[key] for key in METRICS_COLUMNS])

    write_atomically(path, write_rows, binary=False)


# Reading your own digits


def load_digit_image(path):
    """Read a PNG or JPEG of one digit and return it as MNIST pixels: uint8 [28, 28].

    Any size and mode is accepted, and transparent pixels count as white paper. The digit may
    be dark on light or light on dark. Raises UsageError naming path when the file is missing,
    empty, not an image, or shows no digit.
    """
    pixels = read_grayscale(path)
    pixels = make_white_on_black(pixels, path)
    digit = crop_to_ink(pixels, path)
    box = scale_to_box(digit)
    frame = centre_by_mass(box)

    frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return torch.from_numpy(frame)


def read_grayscale(path):
    """Read an image file as float32 gray levels 0..255, with transparency composited on white."""
    path = Path(path)
    require_regular_file(
        path, "Image file", "Check the path and the file name.", "Pass a PNG or JPEG file of one digit."
    )
    if path.stat().st_size == 0:
        raise UsageError(f"The image file {path} is empty (0 bytes). Save the image again.")

    try:
        with open_image(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return grayscale_pixels(image)
    except UnidentifiedImageError as error:
        raise UsageError(f"{path} is not an image that Pillow can read. Pass a PNG or JPEG file.") from error
    except OSError as error:
        raise UsageError(f"Cannot read the image {path}: {error}. Save the image again as PNG.") from error


def open_image(path):
    """Open an image file with Pillow, raising UsageError when it has too many pixels.

    Pillow only warns (DecompressionBombWarning) about an image of more than
    Image.MAX_IMAGE_PIXELS pixels and raises DecompressionBombError above twice that. Both
    become one UsageError, so no warning reaches stderr. The limit is read at each call.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        limit = Image.MAX_IMAGE_PIXELS
        match = PILLOW_PIXEL_COUNT.search(str(error))
        pixel_count = f"{int(match[1]):,} pixels" if match else "too many pixels"
        raise UsageError(
            f"The image {path} has {pixel_count}, and the limit is {limit:,} (Pillow's "
            f"Image.MAX_IMAGE_PIXELS, which guards against decompression bombs). Scale the image "
            f"down, for example to 1000 pixels on its longer side, and pass it again."
        ) from error


def grayscale_pixels(image):
    """Convert a PIL image of any mode to a float32 array of gray levels 0..255."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))

    # Pillow's conversion of 16-bit and 32-bit integer images to "L" clips at 255 instead of
    # scaling. 16-bit PNGs open as "I;16" or, in older Pillow versions, as "I".
    if image.mode.startswith("I"):
        return np.asarray(image, dtype=np.float32) * (255 / 65535)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image.convert("L"), dtype=np.float32)


def make_white_on_black(pixels, path):
    """Invert a light background, then stretch the levels so background is 0 and the peak 255.

    The background level is the median of the outer frame of pixels.
    """
    border = np.concatenate([pixels[0, :], pixels[-1, :], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > 127:
        pixels = 255 - pixels
        border = 255 - border

    background = float(np.median(border))
    peak = float(pixels.max())
    if peak - background < MIN_CONTRAST:
        raise UsageError(
            f"The image {path} shows no digit: all its pixels have about the same brightness. "
            f"Pass an image with a dark digit on light paper or a light digit on dark."
        )

    stretched = (pixels - background) * (255 / (peak - background))
    return np.clip(stretched, 0, 255)


def crop_to_ink(pixels, path):
    """Cut out the bounding box of the ink, ignoring ink pixels that have no ink neighbour."""
    ink = pixels > INK_THRESHOLD
    ink = ink & (count_ink_neighbours(ink) > 0)
    if not ink.any():
        raise UsageError(
            f"The image {path} shows no digit, only isolated specks. Pass an image of one "
            f"handwritten digit."
        )

    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    return pixels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def count_ink_neighbours(ink):
    """Return, for every pixel, how many of its 8 neighbours are ink."""
    padded = np.pad(ink.astype(np.int32), 1)
    height, width = ink.shape
    counts = np.zeros(ink.shape, dtype=np.int32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            counts += padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
    return counts


def scale_to_box(digit):
    """Resize the digit so that its longer side is DIGIT_BOX pixels, keeping the aspect ratio."""
    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    new_width = max(1, round(width * scale))
    new_height = max(1, round(height * scale))

    # Lanczos in Pillow widens its kernel when it shrinks, so it averages over the original
    # pixels (anti-aliasing). Its overshoot near strokes can leave values outside 0..255.
    image = Image.fromarray(digit.astype(np.float32))
    resized = image.resize((new_width, new_height), Image.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 255)


def centre_by_mass(box):
    """Place the box in a 28x28 frame so that its centre of mass lies on pixel (14, 14).

    The box is moved by whole pixels and stays inside the frame, as MNIST's digits did.
    """
    height, width = box.shape
    mass = box.sum()
    centre_row = (box.sum(axis=1) * np.arange(height)).sum() / mass
    centre_column = (box.sum(axis=0) * np.arange(width)).sum() / mass

    top = round(CENTRE_INDEX - centre_row)
    left = round(CENTRE_INDEX - centre_column)
    top = min(max(top, 0), IMAGE_WIDTH - height)
    left = min(max(left, 0), IMAGE_WIDTH - width)

    frame = np.zeros((IMAGE_WIDTH, IMAGE_WIDTH), dtype=np.float32)
    frame[top : top + height, left : left + width] = box
    return frame


def prepare_for_network(pixels):
    """Turn uint8 pixels [28, 28] into the network's input: float32 [1, 1, 28, 28], normalised
    with the same arithmetic as the training loaders."""
    if pixels.dtype != torch.uint8 or tuple(pixels.shape) != (IMAGE_WIDTH, IMAGE_WIDTH):
        raise UsageError(
            f"prepare_for_network needs uint8 pixels of shape [28, 28], got {pixels.dtype} of "
            f"shape {list(pixels.shape)}. Use load_digit_image to read an image file."
        )

    mean = c.normalization.mean[0]
    std = c.normalization.std[0]
    image = pixels.float().div(255).sub(mean).div(std)
    return image.view(1, 1, IMAGE_WIDTH, IMAGE_WIDTH)


def predict_digits(model, image_paths, device="cpu", save_dir=None):
    """Classify image files of single digits, print one line for each, and return the results.

    image_paths: a list of paths, or one path. The model must already be on device. Its
    outputs go through a softmax, so the printed figures are scores that sum to 1. They are
    probabilities only for a network trained on logits with the cross-entropy loss.
    Returns [(path, digit, [(digit, score), ...3])]. With save_dir, the 28x28 image that the
    network saw is saved there as <stem>-28x28.png (see network_input_paths). A saved image
    that would replace an input image is a UsageError, raised before anything is written.
    """
    if isinstance(image_paths, (str, os.PathLike)):
        image_paths = [image_paths]
    if len(image_paths) == 0:
        raise UsageError("No image files given. Pass at least one PNG or JPEG file of a digit.")

    # Every file is read before any is classified, so a bad file stops the run early.
    all_pixels = [load_digit_image(path) for path in image_paths]
    if save_dir is not None:
        save_network_inputs(image_paths, all_pixels, save_dir)

    batch = torch.cat([prepare_for_network(pixels) for pixels in all_pixels]).to(device)
    model.eval()
    with torch.no_grad():
        scores = torch.softmax(model(batch), dim=1).cpu()

    results = []
    top_count = min(3, scores.shape[1])
    for path, image_scores in zip(image_paths, scores):
        top_scores, top_digits = image_scores.topk(top_count)
        top = [(int(digit), float(score)) for digit, score in zip(top_digits, top_scores)]
        ranking = ", ".join(f"{digit} {score:.3f}" for digit, score in top)
        print(f"{path}: {top[0][0]} (top {top_count}: {ranking})")
        results.append((path, top[0][0], top))

    return results


def save_network_inputs(image_paths, all_pixels, save_dir):
    """Save each 28x28 image at the path network_input_paths returns, creating the folder if needed.

    Raises UsageError before it creates or writes anything when a saved image would replace one
    of the input images.
    """
    save_dir = Path(save_dir)
    save_paths = network_input_paths(image_paths, save_dir)
    check_inputs_kept(image_paths, save_paths)

    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"Cannot create the folder {save_dir}: {error.strerror or error}. Choose another folder."
        ) from error

    for save_path, pixels in zip(save_paths, all_pixels):
        image = Image.fromarray(pixels.numpy())
        save_png(image, save_path)


def network_input_paths(image_paths, save_dir):
    """Return the path in save_dir where the 28x28 input of each image is saved: <stem>-28x28.png.

    A name already taken by an earlier image of the same call gets the first free number
    (a/7.png and b/7.jpg give 7-28x28.png and 7-2-28x28.png), so no saved image replaces
    another. Names are compared case-insensitively, because 7A.png and 7a.png would save to
    the same file on a case-insensitive file system.
    """
    save_dir = Path(save_dir)
    taken_names = set()
    save_paths = []

    for path in image_paths:
        stem = Path(path).stem
        name = f"{stem}-28x28.png"
        number = 2
        while name.casefold() in taken_names:
            name = f"{stem}-{number}-28x28.png"
            number += 1

        taken_names.add(name.casefold())
        save_paths.append(save_dir / name)
    return save_paths


def check_inputs_kept(image_paths, save_paths):
    """Raise UsageError when a path in save_paths names one of the input images.

    Paths are compared after resolving symbolic links and relative parts.
    """
    inputs = {Path(path).resolve(): Path(path) for path in image_paths}

    for image_path, save_path in zip(image_paths, save_paths):
        replaced = inputs.get(save_path.resolve())
        if replaced is None:
            continue
        raise UsageError(
            f"Saving the 28x28 input of {image_path} as {save_path} would replace the input image "
            f"{replaced}. Choose another folder for the saved inputs (--save-inputs)."
        )
