"""The extended training set of chapter 6: every training image plus four copies shifted by one pixel.

Image i of the 60,000 becomes images 5i to 5i+4 of the 300,000: the original, then the copy
shifted one pixel right, left, up and down. The row or column that a shift moves in is black
(0), and each label is repeated five times. The set is built with whole-tensor slicing and
cached as uint8 under <data folder>/MNIST/extended, so later runs load it in well under a second.
"""

import zlib
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from atomic_files import write_atomically

CACHE_FORMAT = 2
CACHE_NAME = "training-extended.pt"

# (name, row shift, column shift) in the order the copies follow each original image.
SHIFTS = (("right", 0, 1), ("left", 0, -1), ("up", -1, 0), ("down", 1, 0))


def shifted_regions(size, shift):
    """Return (source, target) slices along one axis for a shift of -1, 0 or +1 pixels."""
    source = slice(max(0, -shift), size - max(0, shift))
    target = slice(max(0, shift), size - max(0, -shift))
    return source, target


def build_extended_data(images, labels):
    """Return (images [5N, H, W], labels [5N]): each image followed by its four shifted copies.

    The result is filled in place, one whole-tensor copy per shift: copy k of every image is
    the slice [:, k] of one [N, 5, H, W] tensor, so no per-image Python runs.
    """
    count, height, width = images.shape
    extended = torch.empty((count, len(SHIFTS) + 1, height, width), dtype=images.dtype)
    extended[:, 0] = images

    for copy_index, (_name, row_shift, column_shift) in enumerate(SHIFTS, start=1):
        copy = extended[:, copy_index]
        source_rows, target_rows = shifted_regions(height, row_shift)
        source_columns, target_columns = shifted_regions(width, column_shift)

        copy[:, target_rows, target_columns] = images[:, source_rows, source_columns]

        # The row or column that the shift vacated is black.
        if row_shift == 1:
            copy[:, 0, :] = 0
        elif row_shift == -1:
            copy[:, -1, :] = 0
        if column_shift == 1:
            copy[:, :, 0] = 0
        elif column_shift == -1:
            copy[:, :, -1] = 0

    extended_labels = labels.repeat_interleave(len(SHIFTS) + 1)
    return extended.reshape(-1, height, width), extended_labels


def data_checksum(images, labels):
    """Return the CRC-32 of the image and label bytes, stored in the cache to detect damaged content."""
    checksum = zlib.crc32(images.contiguous().numpy().data)
    return zlib.crc32(labels.contiguous().numpy().data, checksum)


def load_or_build_extended_data(cache_folder, images, labels):
    """Load the extended set from its cache, or build it from the training set and cache it.

    A cache that cannot be read, or whose shape or checksum is wrong, is rebuilt after a
    one-line notice.
    """
    cache_path = Path(cache_folder) / CACHE_NAME
    expected_count = 5 * len(labels)

    if cache_path.exists():
        problem, cached = read_cache(cache_path, expected_count, images.shape[1:])
        if problem is None:
            return cached
        print(f"Extended training data cache {cache_path} is unusable ({problem}); rebuilding it.")

    extended_images, extended_labels = build_extended_data(images, labels)
    write_cache(cache_path, extended_images, extended_labels)
    return extended_images, extended_labels


def read_cache(cache_path, expected_count, image_shape):
    """Return (None, (images, labels)) for a good cache, or (reason, None) for a bad one."""
    try:
        content = torch.load(cache_path, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable cache is rebuilt, whatever the cause
        return f"cannot be read: {type(error).__name__}", None

    if not isinstance(content, dict) or content.get("format") != CACHE_FORMAT:
        return "unknown format", None

    images = content.get("images")
    labels = content.get("labels")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return "images or labels missing", None
    if images.dtype != torch.uint8 or tuple(images.shape) != (expected_count, *image_shape):
        return f"images of shape {tuple(images.shape)} and type {images.dtype}", None
    if labels.dtype != torch.int64 or tuple(labels.shape) != (expected_count,):
        return f"labels of shape {tuple(labels.shape)} and type {labels.dtype}", None
    if data_checksum(images, labels) != content.get("crc32"):
        return "checksum mismatch", None

    return None, (images, labels)


def write_cache(cache_path, images, labels):
    """Save the extended set to a temporary file and rename it, so readers never see half a file."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "format": CACHE_FORMAT,
        "images": images,
        "labels": labels,
        "crc32": data_checksum(images, labels),
    }

    def write_content(file):
        torch.save(content, file)

    write_atomically(cache_path, write_content)


class ExtendedMNIST(Dataset):
    """The extended training set as a Dataset that returns (transformed PIL image, label).

    data (uint8 [300000, 28, 28]) and targets (int64 [300000]) mirror the attributes of
    torchvision.datasets.MNIST, so the same loaders work on both.
    """

    def __init__(self, data, targets, transform=None):
        self.data = data
        self.targets = targets
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        # A 2-D uint8 array becomes a grayscale ("L") image, as in torchvision.datasets.MNIST.
        image = Image.fromarray(self.data[index].numpy())
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])
