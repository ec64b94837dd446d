"""Find, unpack and verify the four MNIST IDX files under <data folder>/MNIST/raw.

The repository ships the files gzip-compressed. They are unpacked on first use, and every
unpacked file is checked (IDX header, size and md5) before torchvision reads it. The .gz files
were recompressed, so their md5 differs from the historical downloads, and only the unpacked
content is compared with the published checksums.
"""

import gzip
import hashlib
import shutil
import sys
import zlib
from pathlib import Path

from atomic_files import write_atomically
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

# Files that passed verify_checksum, keyed by (path, size, modification time), so that a
# process that loads the data several times computes each md5 once.
_verified_files = set()


def raw_folder(root):
    """Return the folder of the IDX files, in the layout that torchvision.datasets.MNIST uses."""
    return Path(root) / "MNIST" / "raw"


def split_file_names(train):
    """Return the (images, labels) file names of the training or the test set."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def prepare_mnist_files(root, download=True):
    """Make sure that the four unpacked, verified IDX files are in root/MNIST/raw.

    torchvision.datasets.MNIST needs all four to load either split. Missing files are unpacked
    from their .gz copies. When neither copy is there and download is True, torchvision's
    downloader is tried. Raises UsageError when files stay missing or fail verification.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"The data folder {root} is a file. Pass a folder that contains MNIST/raw "
            f"(for example --data-dir ./data)."
        )

    folder = raw_folder(root)
    names = list(MNIST_FILES)
    for name in names:
        unpack_if_missing(folder / name)

    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        reject_folder_inside_data_folder(root)
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

    for train in (True, False):
        images_name, labels_name = split_file_names(train)
        verify_split(folder / images_name, folder / labels_name)


def verify_split(images_path, labels_path):
    """Verify the image and label files of one split.

    The checks run from the most specific message to the least: IDX headers and file sizes,
    then matching image and label counts, then the published size and md5.
    """
    image_count = read_idx_count(images_path, IMAGES_MAGIC)
    label_count = read_idx_count(labels_path, LABELS_MAGIC)
    if image_count != label_count:
        raise UsageError(
            f"MNIST files do not match: {images_path} contains {image_count} images but "
            f"{labels_path} contains {label_count} labels. Replace both with the original files."
        )

    verify_checksum(images_path)
    verify_checksum(labels_path)


def unpack_if_missing(path):
    """Unpack path.gz to path when only the compressed copy exists.

    The content goes to a temporary file that is renamed at the end, so an interrupted
    unpack never leaves a partial IDX file behind.
    """
    gz_path = path.with_name(path.name + ".gz")
    if path.exists() or not gz_path.exists():
        return

    def write_unpacked(target):
        try:
            with gzip.open(gz_path, "rb") as source:
                shutil.copyfileobj(source, target, length=1 << 20)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise UsageError(
                f"Cannot unpack {gz_path}: {error}. The file is damaged; replace it with a good "
                f"copy of the MNIST file."
            ) from None

    write_atomically(path, write_unpacked)


def reject_folder_inside_data_folder(root):
    """Raise UsageError when the MNIST files are under root, but not in root/MNIST/raw.

    A common mistake is --data-dir data/MNIST or data/MNIST/raw where data is meant. The
    message then names the right folder, and no download is tried.
    """
    root = Path(root).resolve()
    if contains_mnist_files(root / "raw") and root.name == "MNIST":
        raise wrong_data_folder_error(root / "raw", root.parent)
    if contains_mnist_files(root) and root.name == "raw" and root.parent.name == "MNIST":
        raise wrong_data_folder_error(root, root.parent.parent)
    if contains_mnist_files(root):
        raise UsageError(
            f"The MNIST files are in {root}, but the scripts read them from {raw_folder(root)}. "
            f"Move them there, or pass --data-dir with a folder that contains MNIST/raw."
        )


def contains_mnist_files(folder):
    """Return whether folder contains any of the four MNIST files, unpacked or as .gz."""
    for name in MNIST_FILES:
        if (folder / name).exists() or (folder / (name + ".gz")).exists():
            return True
    return False


def wrong_data_folder_error(files_folder, data_folder):
    return UsageError(
        f"The MNIST files are in {files_folder}, so the data folder (the one that contains "
        f"MNIST/raw) is {data_folder}. Pass --data-dir {data_folder}."
    )


def download_with_torchvision(root):
    """Try torchvision's MNIST download into root/MNIST/raw; a failure only prints a notice.

    Folders that the attempt created are removed again when it fails and leaves them empty.
    """
    from torchvision.datasets import MNIST

    folder = raw_folder(root)
    new_folders = [path for path in (folder, folder.parent, Path(root)) if not path.exists()]
    print(f"MNIST files not found in {folder}. Trying to download them with torchvision.", file=sys.stderr)
    try:
        MNIST(root, train=True, download=True)
    except (RuntimeError, OSError) as error:
        # torchvision lists each mirror and its error on separate lines; keep them on one.
        reason = " ".join(str(error).split()) or type(error).__name__
        print(f"Download of MNIST failed: {reason[:400]}", file=sys.stderr)
        remove_empty_folders(new_folders)


def remove_empty_folders(folders):
    """Remove each folder in order (deepest first) if it exists and is empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def replacement_advice(path):
    return (
        f"Delete {path} so that it is unpacked again from its .gz copy, or replace it with the original "
        f"file. If the error comes back, the .gz copy is damaged or another file: replace it too."
    )


def read_idx_count(path, expected_magic):
    """Check the IDX header of an MNIST file against its size; return the number of items.

    Raises UsageError naming the file when the magic number, the image size or the file
    length is wrong.
    """
    size = path.stat().st_size
    is_images = expected_magic == IMAGES_MAGIC
    header_size = 16 if is_images else 8
    with open(path, "rb") as file:
        header = file.read(header_size)
    if len(header) < 8:
        raise UsageError(
            f"MNIST file {path} is truncated: it has only {size} bytes. {replacement_advice(path)}"
        )

    magic = int.from_bytes(header[0:4], "big")
    count = int.from_bytes(header[4:8], "big")
    if magic != expected_magic:
        kind = "image" if is_images else "label"
        raise UsageError(
            f"MNIST file {path} has IDX magic number {magic}, expected {expected_magic}. "
            f"It is not an MNIST {kind} file. {replacement_advice(path)}"
        )

    item_bytes = 1
    if is_images:
        rows = int.from_bytes(header[8:12], "big") if len(header) >= 12 else 0
        columns = int.from_bytes(header[12:16], "big") if len(header) >= 16 else 0
        if (rows, columns) != (IMAGE_SIZE, IMAGE_SIZE):
            raise UsageError(
                f"MNIST file {path} contains {rows}x{columns} images, expected "
                f"{IMAGE_SIZE}x{IMAGE_SIZE}. {replacement_advice(path)}"
            )
        item_bytes = IMAGE_SIZE * IMAGE_SIZE

    expected_bytes = header_size + count * item_bytes
    if size != expected_bytes:
        raise UsageError(
            f"MNIST file {path} is truncated or damaged: its header announces {count} items, "
            f"which take {expected_bytes} bytes, but the file has {size} bytes. {replacement_advice(path)}"
        )
    return count


def verify_checksum(path):
    """Compare an MNIST file's size and md5 with the published figures; raise UsageError if they differ."""
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key in _verified_files:
        return

    expected_size, expected_md5 = MNIST_FILES[path.name]
    if status.st_size != expected_size:
        raise UsageError(
            f"MNIST file {path} has {status.st_size} bytes, expected {expected_size}. {replacement_advice(path)}"
        )

    md5 = file_md5(path)
    if md5 != expected_md5:
        raise UsageError(
            f"MNIST file {path} fails its checksum: md5 {md5}, expected {expected_md5}. {replacement_advice(path)}"
        )
    _verified_files.add(key)


def file_md5(path):
    """Return the hex md5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
