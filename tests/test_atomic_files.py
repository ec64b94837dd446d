"""write_atomically: interrupted writes and long file names."""

import os
import signal

import pytest
import torch

from atomic_files import write_atomically


@pytest.fixture
def default_interrupt_handler():
    """Python's own SIGINT handler for the test, which may run where SIGINT is ignored."""
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous_handler)


def test_interrupt_waits_for_write(tmp_path, default_interrupt_handler):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"earlier checkpoint")

    def write_with_interrupt(file):
        file.write(b"first half, ")
        os.kill(os.getpid(), signal.SIGINT)
        file.write(b"second half")

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, write_with_interrupt)

    assert target.read_bytes() == b"first half, second half"
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_uninterrupted_write_keeps_handler(tmp_path, default_interrupt_handler):
    write_atomically(tmp_path / "notes.txt", lambda file: file.write("notes\n"), binary=False)

    assert (tmp_path / "notes.txt").read_text() == "notes\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ignored_interrupt_stays_ignored(tmp_path):
    previous_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        write_atomically(tmp_path / "notes.txt", lambda file: os.kill(os.getpid(), signal.SIGINT), binary=False)
        handler_after_write = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous_handler)

    assert handler_after_write is signal.SIG_IGN
    assert (tmp_path / "notes.txt").exists()


def test_other_runtime_error_kept(tmp_path):
    def failing_write(file):
        raise RuntimeError("some other failure")

    with pytest.raises(RuntimeError, match="some other failure"):
        write_atomically(tmp_path / "checkpoint.pt", failing_write)

    assert list(tmp_path.iterdir()) == []


def test_long_file_name_written(tmp_path):
    # 245 + 3 bytes is within the usual limit of 255, but the temporary name adds about 20.
    target = tmp_path / ("b" * 245 + ".pt")

    write_atomically(target, lambda file: torch.save({"epoch": 1}, file))

    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert [path.name for path in tmp_path.iterdir()] == [target.name]
