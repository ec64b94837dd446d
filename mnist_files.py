"""Find, unpack and verify the four MNIST IDX files under <data folder>/MNIST/raw.

The repository ships the files gzip-compressed. They are unpacked on first use, and every
unpacked file is checked (IDX header, size and md5) before torchvision reads it. The .gz files
were recompressed, so their md5 differs from the historical downloads, and only the unpacked
content is compared with the published checksums.
"""

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from errors import UsageError

# Size in bytes and md5 of each unpacked file of the original MNIST distribution.
MNIST_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}

# IDX magic numbers: 0x0803 is unsigned bytes in 3 dimensions, 0x0801 in 1 dimension.
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SIZE = 28

# Files that passed verify_idx_file, keyed by (path, size, modification time), so that a
# process that loads the data several times computes each md5 once.
_verified_files = set()


def raw_folder(root):
    """Return the folder that holds the IDX files, the layout torchvision.datasets.MNIST uses."""
    return Path(root) / "MNIST" / "raw"


def split_file_names(train):
    """Return the (images, labels) file names of the training or the test set."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def prepare_mnist_files(root, train, download=True):
    """Make sure that the unpacked, verified IDX files of one split are in root/MNIST/raw.

    Missing files are unpacked from their .gz copies. When neither is there and download is
    True, torchvision's downloader is tried. Raises UsageError when the files stay missing or
    fail verification.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"The data folder {root} is a file. Pass a folder that contains MNIST/raw "
            f"(for example --data-dir ./data)."
        )

    folder = raw_folder(root)
    names = split_file_names(train)
    for name in names:
        unpack_if_missing(folder / name)

    missing = [name for name in names if not (folder / name).exists()]
    if missing and download:
        download_with_torchvision(root)
        missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise UsageError(
            f"MNIST data not found: {', '.join(missing)} (or the same names ending in .gz) "
            f"missing from {folder.resolve()}, and they could not be downloaded. Copy the "
            f"MNIST files into that folder, or pass --data-dir with a folder that contains "
            f"MNIST/raw."
        )

    images_path = folder / names[0]
    labels_path = folder / names[1]
    image_count = verify_idx_file(images_path, IMAGES_MAGIC)
    label_count = verify_idx_file(labels_path, LABELS_MAGIC)
    if image_count != label_count:
        raise UsageError(
            f"MNIST files do not match: {images_path} holds {image_count} images but "
            f"{labels_path} holds {label_count} labels. Replace both with the original files."
        )


def unpack_if_missing(path):
    """Unpack path.gz to path when only the compressed copy exists.

    The content goes to a temporary file that is renamed at the end, so an interrupted
    unpack never leaves a partial IDX file behind.
    """
    gz_path = path.with_name(path.name + ".gz")
    if path.exists() or not gz_path.exists():
        return

    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with gzip.open(gz_path, "rb") as source, os.fdopen(descriptor, "wb") as target:
            shutil.copyfileobj(source, target, length=1 << 20)
        os.replace(temp_name, path)
    except (OSError, EOFError, zlib.error) as error:
        Path(temp_name).unlink(missing_ok=True)
        raise UsageError(
            f"Cannot unpack {gz_path}: {error}. The file is damaged; replace it with a good "
            f"copy of the MNIST file."
        ) from None


def download_with_torchvision(root):
    """Try torchvision's MNIST download into root/MNIST/raw; a failure only prints a notice."""
    from torchvision.datasets import MNIST

    try:
        MNIST(root, train=True, download=True)
    except (RuntimeError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"Download of MNIST failed: {first_line}")


def verify_idx_file(path, expected_magic):
    """Check the IDX header, size and md5 of one unpacked MNIST file; return its item count.

    Raises UsageError naming the file and the first check that failed.
    """
    size = path.stat().st_size
    key = (str(path.resolve()), size, path.stat().st_mtime_ns)
    advice = f"Delete {path} so that it is unpacked again from its .gz copy, or replace it with the original file."

    with open(path, "rb") as file:
        header = file.read(16 if expected_magic == IMAGES_MAGIC else 8)
    if len(header) < 8:
        raise UsageError(f"MNIST file {path} is truncated: it has only {size} bytes. {advice}")

    magic = int.from_bytes(header[0:4], "big")
    count = int.from_bytes(header[4:8], "big")
    if magic != expected_magic:
        raise UsageError(
            f"MNIST file {path} has IDX magic number {magic}, expected {expected_magic}. "
            f"It is not an MNIST {'image' if expected_magic == IMAGES_MAGIC else 'label'} file. {advice}"
        )

    item_bytes = 1
    if expected_magic == IMAGES_MAGIC:
        rows = int.from_bytes(header[8:12], "big")
        columns = int.from_bytes(header[12:16], "big")
        if (rows, columns) != (IMAGE_SIZE, IMAGE_SIZE):
            raise UsageError(
                f"MNIST file {path} holds {rows}x{columns} images, expected "
                f"{IMAGE_SIZE}x{IMAGE_SIZE}. {advice}"
            )
        item_bytes = IMAGE_SIZE * IMAGE_SIZE

    header_size = len(header)
    if size != header_size + count * item_bytes:
        raise UsageError(
            f"MNIST file {path} is truncated or damaged: its header announces {count} items, "
            f"which take {header_size + count * item_bytes} bytes, but the file has {size} bytes. {advice}"
        )

    if key in _verified_files:
        return count

    expected_size, expected_md5 = MNIST_FILES[path.name]
    if size != expected_size:
        raise UsageError(
            f"MNIST file {path} has {size} bytes, expected {expected_size}. {advice}"
        )

    md5 = file_md5(path)
    if md5 != expected_md5:
        raise UsageError(
            f"MNIST file {path} fails its checksum: md5 {md5}, expected {expected_md5}. {advice}"
        )

    _verified_files.add(key)
    return count


def file_md5(path):
    """Return the hex md5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
