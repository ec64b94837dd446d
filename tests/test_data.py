"""Tests for the data layer: the REPL facts of the blog, normalisation figures, extended data.

The REPL facts read the MNIST files shipped in data/MNIST/raw. Everything that writes (the
unpacked files of a fresh folder, the extended-data cache) works on a copy in a temporary folder.
"""

import doctest
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

import common as c
import extended_data
import mnist_files
import pytorch_mnist
import reference_pipeline as r

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RAW_FOLDER = REPO_ROOT / "data" / "MNIST" / "raw"
GZ_NAMES = [name + ".gz" for name in mnist_files.MNIST_FILES]
NORMALIZATION_PAGE = REPO_ROOT / "data_normalization_calculations.md"

# Training images compared image by image with the per-image reference build.
REFERENCE_IMAGE_COUNT = 2000

# Training image 11898 has ink in column 0 and in row 27, so the left and down copies blank
# columns and rows that numpy.roll would otherwise fill with ink.
EDGE_DIGIT_INDEX = 11898


def copy_shipped_gz_files(root):
    """Copy the four shipped .gz files into root/MNIST/raw and return that folder."""
    raw = mnist_files.raw_folder(root)
    raw.mkdir(parents=True)
    for name in GZ_NAMES:
        shutil.copy(SHIPPED_RAW_FOLDER / name, raw / name)
    return raw


def pixel_mean_std(images):
    """Return the mean and population standard deviation of uint8 pixels scaled to [0, 1].

    The figures come from the histogram of the 256 pixel values, in float64, so that the
    300,000-image extended set needs no 1.9 GB float copy.
    """
    counts = torch.bincount(images.flatten(), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = (counts * values).sum() / total
    variance = (counts * (values - mean) ** 2).sum() / total
    return mean.item(), variance.sqrt().item()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A temporary data folder with copies of the shipped .gz files, unpacked on first use."""
    root = tmp_path_factory.mktemp("data")
    copy_shipped_gz_files(root)
    return root


@pytest.fixture(scope="module")
def extended_set(data_root):
    """The 300,000-image extended set, built once and cached under data_root."""
    return c.get_extended_dataset(root=data_root)


@pytest.fixture(scope="module")
def extended_statistics(extended_set):
    """(mean, std) of the extended set's pixels scaled to [0, 1]."""
    return pixel_mean_std(extended_set.data)


@pytest.fixture(scope="module")
def training_set():
    return c.get_dataset(train=True, transform=None)


@pytest.fixture(scope="module")
def first_test_batch():
    return next(iter(c.get_test_loader()))


# The blog's REPL session.


def test_first_test_batch_labels(first_test_batch):
    _images, labels = first_test_batch
    assert torch.equal(labels, torch.tensor([7, 2, 1, 0, 4, 1, 4, 9, 5, 9]))


def test_first_test_batch_size(first_test_batch):
    images, _labels = first_test_batch
    assert images.size() == torch.Size([10, 1, 28, 28])


def test_first_test_batch_dtype(first_test_batch):
    images, _labels = first_test_batch
    assert images.dtype == torch.float32


def test_first_test_batch_reshape(first_test_batch):
    images, _labels = first_test_batch
    assert images.reshape(-1, 28 * 28).size() == torch.Size([10, 784])


def test_train_loader_lengths():
    train_loader = c.get_train_loader()
    assert len(train_loader.dataset) == 60000
    assert len(train_loader) == 6000


def test_test_loader_lengths():
    test_loader = c.get_test_loader()
    assert len(test_loader.dataset) == 10000
    assert len(test_loader) == 1000


def test_untrained_net_outputs(first_test_batch):
    images, _labels = first_test_batch
    torch.manual_seed(0)
    with torch.no_grad():
        outputs = pytorch_mnist.Net()(images)

    assert outputs.size() == torch.Size([10, 10])
    assert (outputs > 0).all()
    assert (outputs < 1).all()


def test_expand_single_output_three():
    one_hot = pytorch_mnist.expand_single_output(3, 10)
    assert torch.equal(one_hot, torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))


def test_expand_expected_output_one_hot(first_test_batch):
    _images, labels = first_test_batch
    one_hot = pytorch_mnist.expand_expected_output(labels, 10)

    assert one_hot.dtype == torch.float32
    assert one_hot.size() == torch.Size([10, 10])
    assert torch.equal(one_hot, r.expand_expected_output_per_sample(labels, 10))


def test_transform_expected_output_alias():
    assert pytorch_mnist.transform_expected_output is pytorch_mnist.expand_expected_output


# Normalisation figures: mean and standard deviation of the pixels after dividing by 255.


def test_pixel_mean_std_matches_float64():
    test_images = c.get_dataset(train=False, transform=None).data
    pixels = test_images.to(torch.float64) / 255
    mean, std = pixel_mean_std(test_images)

    assert mean == pytest.approx(pixels.mean().item(), abs=1e-9)
    assert std == pytest.approx(pixels.std(correction=0).item(), abs=1e-9)


def test_training_set_mean_std(training_set):
    mean, std = pixel_mean_std(training_set.data)
    assert round(mean, 4) == 0.1307
    assert round(std, 4) == 0.3081


def test_test_set_mean_std():
    mean, std = pixel_mean_std(c.get_dataset(train=False, transform=None).data)
    assert round(mean, 4) == 0.1325
    assert round(std, 4) == 0.3105


def test_extended_set_mean_std(extended_statistics):
    # The original project printed 0.1305 for this mean; data_normalization_calculations.md
    # explains the difference.
    mean, std = extended_statistics
    assert round(mean, 4) == 0.1307
    assert round(std, 4) == 0.3081


def test_normalization_std_is_extended_std(extended_statistics):
    _mean, std = extended_statistics
    assert c.normalization.std == (round(std, 4),)


def test_normalization_mean_near_extended_mean(extended_statistics):
    mean, _std = extended_statistics
    assert c.normalization.mean == (0.1305,)
    assert abs(c.normalization.mean[0] - mean) < 0.0002


def test_normalization_page_doctest():
    # Failures are printed by doctest and shown in the captured stdout.
    results = doctest.testfile(str(NORMALIZATION_PAGE), module_relative=False)
    assert results.attempted >= 10
    assert results.failed == 0


# Unpacking a fresh data folder.


def test_get_dataset_fresh_folder(tmp_path):
    # torchvision's MNIST class requires the unpacked files of both splits to load either one.
    raw = copy_shipped_gz_files(tmp_path)
    test_set = c.get_dataset(tmp_path, train=False, download=False)

    assert len(test_set) == 10000
    for name in mnist_files.MNIST_FILES:
        assert (raw / name).stat().st_size == mnist_files.MNIST_FILES[name][0]


# The extended training set.


def test_extended_set_length(extended_set):
    assert len(extended_set) == 300000
    assert extended_set.data.shape == (300000, 28, 28)
    assert extended_set.targets.shape == (300000,)


def test_extended_labels_repeated(extended_set, training_set):
    assert torch.equal(extended_set.targets, training_set.targets.repeat_interleave(5))


def test_extended_build_matches_reference(training_set):
    images = training_set.data[:REFERENCE_IMAGE_COUNT]
    labels = training_set.targets[:REFERENCE_IMAGE_COUNT]
    fast_images, fast_labels = extended_data.build_extended_data(images, labels)
    reference_images, reference_labels = r.build_extended_data_per_image(images, labels)

    assert torch.equal(fast_images, reference_images)
    assert torch.equal(fast_labels, reference_labels)


def test_extended_dataset_matches_reference(extended_set, training_set):
    images = training_set.data[:REFERENCE_IMAGE_COUNT]
    labels = training_set.targets[:REFERENCE_IMAGE_COUNT]
    reference_images, reference_labels = r.build_extended_data_per_image(images, labels)
    count = 5 * REFERENCE_IMAGE_COUNT

    assert torch.equal(extended_set.data[:count], reference_images)
    assert torch.equal(extended_set.targets[:count], reference_labels)


def test_extended_copy_order(extended_set, training_set):
    original = training_set.data[EDGE_DIGIT_INDEX]
    copies = extended_set.data[5 * EDGE_DIGIT_INDEX : 5 * EDGE_DIGIT_INDEX + 5]
    original_copy, right, left, up, down = copies

    assert (original[:, 0] > 0).any(), "the digit must touch column 0"
    assert (original[27, :] > 0).any(), "the digit must touch row 27"

    assert torch.equal(original_copy, original)

    assert torch.equal(right[:, 1:], original[:, :-1])
    assert (right[:, 0] == 0).all()

    assert torch.equal(left[:, :-1], original[:, 1:])
    assert (left[:, 27] == 0).all()

    assert torch.equal(up[:-1, :], original[1:, :])
    assert (up[27, :] == 0).all()

    assert torch.equal(down[1:, :], original[:-1, :])
    assert (down[0, :] == 0).all()


def test_extended_copy_labels(extended_set, training_set):
    label = training_set.targets[EDGE_DIGIT_INDEX]
    labels = extended_set.targets[5 * EDGE_DIGIT_INDEX : 5 * EDGE_DIGIT_INDEX + 5]
    assert torch.equal(labels, label.repeat(5))


def test_shift_blanks_vacated_edge():
    white = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    images, _labels = extended_data.build_extended_data(white, torch.tensor([3]))
    _original, right, left, up, down = images

    assert (right[:, 0] == 0).all()
    assert (right[:, 1:] == 255).all()
    assert (left[:, 27] == 0).all()
    assert (left[:, :27] == 255).all()
    assert (up[27, :] == 0).all()
    assert (up[:27, :] == 255).all()
    assert (down[0, :] == 0).all()
    assert (down[1:, :] == 255).all()


def test_extended_item_transformed(extended_set):
    training_set = c.get_dataset(train=True)
    image, label = extended_set[5 * EDGE_DIGIT_INDEX]
    expected_image, expected_label = training_set[EDGE_DIGIT_INDEX]

    assert torch.equal(image, expected_image)
    assert label == expected_label


# The extended-data cache.


def test_extended_cache_reused(data_root, extended_set, capsys):
    cache_path = data_root / "MNIST" / "extended" / extended_data.CACHE_NAME
    before = cache_path.stat()
    capsys.readouterr()

    reloaded = c.get_extended_dataset(root=data_root)

    assert capsys.readouterr().out == ""
    assert cache_path.stat().st_mtime_ns == before.st_mtime_ns
    assert cache_path.stat().st_ino == before.st_ino
    assert torch.equal(reloaded.data, extended_set.data)
    assert torch.equal(reloaded.targets, extended_set.targets)


def truncate_file(path):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def empty_file(path):
    path.write_bytes(b"")


def flip_image_bytes(path):
    """Invert 16 bytes in the middle of the stored image data.

    The zip structure stays valid, and torch.load does not check the entries' CRC-32, so the
    file still loads and only the cache's own checksum can catch the damage.
    """
    with zipfile.ZipFile(path) as archive:
        entries = sorted(archive.infolist(), key=lambda entry: entry.file_size)
    images_entry = entries[-1]

    content = bytearray(path.read_bytes())
    # A zip local file header is 30 bytes, then the file name and the extra field, whose
    # lengths are the two little-endian 16-bit numbers at offsets 26 and 28.
    header = images_entry.header_offset
    name_length, extra_length = struct.unpack("<HH", content[header + 26 : header + 30])
    middle = header + 30 + name_length + extra_length + images_entry.file_size // 2
    for position in range(middle, middle + 16):
        content[position] ^= 0xFF
    path.write_bytes(bytes(content))


def rewrite_cache(path, change):
    content = torch.load(path, weights_only=True)
    change(content)
    torch.save(content, path)


def alter_one_pixel(content):
    images = content["images"]
    images[0, 14, 14] = 255 - images[0, 14, 14]


def alter_checksum(content):
    content["crc32"] ^= 1


def alter_one_label(content):
    labels = content["labels"]
    labels[100] = (labels[100] + 1) % 10


def drop_last_image(content):
    content["images"] = content["images"][:-1]


def set_unknown_format(content):
    content["format"] = extended_data.CACHE_FORMAT + 1


CACHE_DAMAGE = {
    "truncated": (truncate_file, "cannot be read"),
    "empty": (empty_file, "cannot be read"),
    "flipped_image_bytes": (flip_image_bytes, "checksum mismatch"),
    "altered_pixel": (lambda path: rewrite_cache(path, alter_one_pixel), "checksum mismatch"),
    "wrong_checksum": (lambda path: rewrite_cache(path, alter_checksum), "checksum mismatch"),
    "altered_label": (lambda path: rewrite_cache(path, alter_one_label), "checksum mismatch"),
    "short_images": (lambda path: rewrite_cache(path, drop_last_image), "images of shape"),
    "unknown_format": (lambda path: rewrite_cache(path, set_unknown_format), "unknown format"),
}


@pytest.mark.parametrize("damage", CACHE_DAMAGE)
def test_extended_cache_damaged_rebuilt(damage, training_set, tmp_path, capsys):
    damage_file, reason = CACHE_DAMAGE[damage]
    images = training_set.data[:100]
    labels = training_set.targets[:100]
    cache_path = tmp_path / extended_data.CACHE_NAME
    expected_images, expected_labels = extended_data.build_extended_data(images, labels)

    extended_data.load_or_build_extended_data(tmp_path, images, labels)
    damage_file(cache_path)
    capsys.readouterr()

    rebuilt_images, rebuilt_labels = extended_data.load_or_build_extended_data(tmp_path, images, labels)
    notice = capsys.readouterr().out

    assert notice.count("\n") == 1
    assert str(cache_path) in notice
    assert reason in notice
    assert "rebuilding" in notice
    assert torch.equal(rebuilt_images, expected_images)
    assert torch.equal(rebuilt_labels, expected_labels)

    cached_images, _cached_labels = extended_data.load_or_build_extended_data(tmp_path, images, labels)
    assert capsys.readouterr().out == ""
    assert torch.equal(cached_images, expected_images)
