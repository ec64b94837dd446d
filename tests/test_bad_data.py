"""Tests for bad input: missing or damaged MNIST files and invalid command-line values.

Every bad data folder must raise UsageError with a message that names the file or folder and
gives the next step, and the scripts must exit with status 1 and print that message, without a
traceback.
Invalid option values must get argparse's usage error and exit status 2.

A script run starts a Python process (about 3.5 s of CPU time, most of it importing torch and
torchvision), so only a few cases run as scripts, all from the module-scoped fixture
`script_runs`, a few in parallel. Every case also runs in-process through the script's main().
"""

import gzip
import importlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import common as c
import mnist_files
import pytorch_mnist
from errors import UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RAW_FOLDER = REPO_ROOT / "data" / "MNIST" / "raw"
IMAGES_NAME = "train-images-idx3-ubyte"
LABELS_NAME = "train-labels-idx1-ubyte"

# An empty data folder makes the code try torchvision's download. The script runs send it to a
# proxy on a closed localhost port, so it fails at once and nothing leaves this machine.
CLOSED_LOCAL_PROXY = "http://127.0.0.1:9"
SCRIPT_TIMEOUT_SECONDS = 120
PARALLEL_SCRIPT_RUNS = 4


@pytest.fixture(scope="module")
def real_files():
    """The unpacked bytes of the four MNIST files, read from the shipped .gz files."""
    contents = {}
    for name in mnist_files.MNIST_FILES:
        with gzip.open(SHIPPED_RAW_FOLDER / (name + ".gz"), "rb") as file:
            contents[name] = file.read()
    return contents


def idx_header(magic, *dimensions):
    return b"".join(value.to_bytes(4, "big") for value in (magic, *dimensions))


def write_training_files(root, files, images=None, labels=None):
    """Create root/data/MNIST/raw with the given training files (bytes) and return root/data.

    The good test-set files are written too, because the code checks all four files.
    """
    data_dir = root / "data"
    raw = mnist_files.raw_folder(data_dir)
    raw.mkdir(parents=True)
    for name in mnist_files.split_file_names(train=False):
        (raw / name).write_bytes(files[name])
    if images is not None:
        (raw / IMAGES_NAME).write_bytes(images)
    if labels is not None:
        (raw / LABELS_NAME).write_bytes(labels)
    return data_dir


# Each builder creates one bad data folder under root and returns (value for --data-dir, the
# fragments that the error message must contain).


def build_empty_folder(root, files):
    data_dir = root / "data"
    data_dir.mkdir()
    raw = mnist_files.raw_folder(data_dir).resolve()
    return data_dir, [IMAGES_NAME, LABELS_NAME, str(raw), "Copy the MNIST files"]


def build_mnist_folder_given(root, files):
    data_dir = write_training_files(root, files, files[IMAGES_NAME], files[LABELS_NAME])
    return data_dir / "MNIST", [str(mnist_files.raw_folder(data_dir)), f"Pass --data-dir {data_dir}."]


def build_raw_folder_given(root, files):
    data_dir = write_training_files(root, files, files[IMAGES_NAME], files[LABELS_NAME])
    raw = mnist_files.raw_folder(data_dir)
    return raw, [str(raw), f"Pass --data-dir {data_dir}."]


def build_files_without_layout(root, files):
    folder = root / "downloads"
    folder.mkdir()
    (folder / IMAGES_NAME).write_bytes(files[IMAGES_NAME])
    return folder, [str(folder.resolve()), str(mnist_files.raw_folder(folder.resolve())), "Move them there"]


def build_file_as_folder(root, files):
    path = root / "data.txt"
    path.write_text("not a folder\n")
    return path, [str(path), "is a file", "Pass a folder"]


def build_truncated_images(root, files):
    cut = files[IMAGES_NAME][: 16 + 1000 * 784 + 100]
    data_dir = write_training_files(root, files, cut, files[LABELS_NAME])
    path = mnist_files.raw_folder(data_dir) / IMAGES_NAME
    return data_dir, [str(path), "truncated", "47040016 bytes", "Delete"]


def build_header_only_fragment(root, files):
    data_dir = write_training_files(root, files, files[IMAGES_NAME][:5], files[LABELS_NAME])
    path = mnist_files.raw_folder(data_dir) / IMAGES_NAME
    return data_dir, [str(path), "truncated", "only 5 bytes", "Delete"]


def build_changed_pixel(root, files):
    images = bytearray(files[IMAGES_NAME])
    images[16 + 14 * 28 + 14] ^= 0xFF
    data_dir = write_training_files(root, files, bytes(images), files[LABELS_NAME])
    path = mnist_files.raw_folder(data_dir) / IMAGES_NAME
    return data_dir, [str(path), "checksum", mnist_files.MNIST_FILES[IMAGES_NAME][1], "Delete"]


def build_wrong_magic(root, files):
    images = idx_header(mnist_files.LABELS_MAGIC) + files[IMAGES_NAME][4:]
    data_dir = write_training_files(root, files, images, files[LABELS_NAME])
    path = mnist_files.raw_folder(data_dir) / IMAGES_NAME
    return data_dir, [str(path), "magic number 2049", "expected 2051", "Delete"]


def build_count_mismatch(root, files):
    images = idx_header(mnist_files.IMAGES_MAGIC, 5, 28, 28) + bytes(5 * 784)
    labels = idx_header(mnist_files.LABELS_MAGIC, 4) + bytes(4)
    data_dir = write_training_files(root, files, images, labels)
    path = mnist_files.raw_folder(data_dir) / IMAGES_NAME
    return data_dir, [str(path), "contains 5 images", "contains 4 labels", "Replace both"]


def build_garbage_gz(root, files):
    data_dir = write_training_files(root, files, labels=files[LABELS_NAME])
    gz_path = mnist_files.raw_folder(data_dir) / (IMAGES_NAME + ".gz")
    gz_path.write_bytes(b"these bytes are not gzip data\n" * 20)
    return data_dir, [str(gz_path), "Cannot unpack", "good copy"]


def build_truncated_gz(root, files):
    data_dir = write_training_files(root, files, images=files[IMAGES_NAME])
    compressed = gzip.compress(files[LABELS_NAME])
    gz_path = mnist_files.raw_folder(data_dir) / (LABELS_NAME + ".gz")
    gz_path.write_bytes(compressed[: len(compressed) // 2])
    return data_dir, [str(gz_path), "Cannot unpack", "good copy"]


def build_changed_test_label(root, files):
    data_dir = write_training_files(root, files, files[IMAGES_NAME], files[LABELS_NAME])
    path = mnist_files.raw_folder(data_dir) / "t10k-labels-idx1-ubyte"
    labels = bytearray(files[path.name])
    labels[8] = (labels[8] + 1) % 10
    path.write_bytes(bytes(labels))
    return data_dir, [str(path), "checksum", "Delete"]


DATA_CASES = {
    "empty_folder": build_empty_folder,
    "mnist_folder_given": build_mnist_folder_given,
    "raw_folder_given": build_raw_folder_given,
    "files_without_layout": build_files_without_layout,
    "file_as_folder": build_file_as_folder,
    "truncated_images": build_truncated_images,
    "header_fragment": build_header_only_fragment,
    "changed_pixel": build_changed_pixel,
    "wrong_magic": build_wrong_magic,
    "count_mismatch": build_count_mismatch,
    "garbage_gz": build_garbage_gz,
    "truncated_gz": build_truncated_gz,
    "changed_test_label": build_changed_test_label,
}

# (script module, options, fragments that the usage error must contain)
ARGUMENT_CASES = {
    "unknown_net": ("pytorch_mnist_convnet", ["--net", "bogus"], ["--net", "'bogus'", "invalid choice"]),
    "zero_epochs": ("pytorch_mnist", ["--epochs", "0"], ["--epochs", "'0'", "at least 1"]),
    "negative_epochs": ("pytorch_mnist", ["--epochs", "-3"], ["--epochs", "'-3'", "at least 1"]),
    "text_lr": ("pytorch_mnist", ["--lr", "abc"], ["--lr", "'abc'", "expected a number"]),
    "zero_lr": ("pytorch_mnist", ["--lr", "0"], ["--lr", "'0'", "greater than 0"]),
    "negative_lr": ("pytorch_mnist", ["--lr", "-1"], ["--lr", "'-1'", "greater than 0"]),
}

# The cases that also run as scripts: one for each place in the code that raises a data error,
# and two argument errors. The empty folder has its own script test below.
SCRIPT_DATA_CASES = ("file_as_folder", "mnist_folder_given", "changed_pixel", "garbage_gz")
SCRIPT_ARGUMENT_CASES = ("unknown_net", "text_lr")

# In-process runs of main() cannot turn off the download, so the empty folder runs only as a
# script, where the download goes to CLOSED_LOCAL_PROXY.
MAIN_DATA_CASES = [case for case in DATA_CASES if case != "empty_folder"]


def run_script(script, options):
    environment = dict(os.environ)
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        environment[variable] = CLOSED_LOCAL_PROXY
    for variable in ("no_proxy", "NO_PROXY"):
        environment.pop(variable, None)

    return subprocess.run(
        [sys.executable, f"{script}.py", *options],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
    )


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory, real_files):
    """Run the script cases; return {case: (completed process, message fragments)}."""
    jobs = {}
    for case in SCRIPT_DATA_CASES:
        data_dir, fragments = DATA_CASES[case](tmp_path_factory.mktemp(case), real_files)
        options = ["--epochs", "1", "--device", "cpu", "--data-dir", str(data_dir)]
        jobs[case] = ("pytorch_mnist", options, fragments)

    # A data folder that is a file stops a run at once if the options are wrongly accepted.
    not_a_folder, _fragments = build_file_as_folder(tmp_path_factory.mktemp("arguments"), real_files)
    for case in SCRIPT_ARGUMENT_CASES:
        script, options, fragments = ARGUMENT_CASES[case]
        jobs[case] = (script, [*options, "--data-dir", str(not_a_folder)], fragments)

    with ThreadPoolExecutor(max_workers=PARALLEL_SCRIPT_RUNS) as executor:
        futures = {case: executor.submit(run_script, script, options) for case, (script, options, _) in jobs.items()}
        return {case: (futures[case].result(), jobs[case][2]) for case in jobs}


# The data layer raises UsageError.


@pytest.mark.parametrize("case", DATA_CASES)
def test_get_dataset_bad_data(case, tmp_path, real_files):
    data_dir, fragments = DATA_CASES[case](tmp_path, real_files)

    with pytest.raises(UsageError) as error:
        c.get_dataset(data_dir, train=True, download=False)

    message = str(error.value)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("case", ["garbage_gz", "truncated_gz"])
def test_failed_unpack_leaves_no_file(case, tmp_path, real_files):
    data_dir, _fragments = DATA_CASES[case](tmp_path, real_files)
    raw = mnist_files.raw_folder(data_dir)
    before = sorted(path.name for path in raw.iterdir())

    with pytest.raises(UsageError):
        c.get_dataset(data_dir, train=True, download=False)

    assert sorted(path.name for path in raw.iterdir()) == before


# The scripts exit with status 1 and print the message, without a traceback.


@pytest.mark.parametrize("case", MAIN_DATA_CASES)
def test_main_bad_data(case, tmp_path, real_files, capsys):
    data_dir, fragments = DATA_CASES[case](tmp_path, real_files)

    with pytest.raises(SystemExit) as exit_info:
        pytorch_mnist.main(["--epochs", "1", "--device", "cpu", "--data-dir", str(data_dir)])

    stderr = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in stderr


@pytest.mark.parametrize("case", SCRIPT_DATA_CASES)
def test_script_bad_data(case, script_runs):
    process, fragments = script_runs[case]

    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert process.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in process.stderr


def test_script_empty_folder_download_attempt(tmp_path, real_files):
    data_dir, fragments = build_empty_folder(tmp_path, real_files)

    process = run_script("pytorch_mnist", ["--epochs", "1", "--device", "cpu", "--data-dir", str(data_dir)])

    lines = process.stderr.splitlines()
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert lines[0].startswith("MNIST files not found in ")
    assert lines[1].startswith("Download of MNIST failed: ")
    assert lines[-1].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[-1]
    assert process.stdout == ""
    assert list(data_dir.iterdir()) == []


# Invalid option values get argparse's usage error.


@pytest.mark.parametrize("case", SCRIPT_ARGUMENT_CASES)
def test_script_bad_argument(case, script_runs):
    process, fragments = script_runs[case]
    script = ARGUMENT_CASES[case][0]

    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    assert process.stderr.startswith(f"usage: {script}.py")
    for fragment in fragments:
        assert fragment in process.stderr


@pytest.mark.parametrize("case", ARGUMENT_CASES)
def test_main_bad_argument(case, tmp_path, capsys):
    script, options, fragments = ARGUMENT_CASES[case]
    not_a_folder, _fragments = build_file_as_folder(tmp_path, files=None)
    main = importlib.import_module(script).main

    with pytest.raises(SystemExit) as exit_info:
        main([*options, "--data-dir", str(not_a_folder)])

    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert stderr.startswith(f"usage: {script}.py")
    for fragment in fragments:
        assert fragment in stderr
