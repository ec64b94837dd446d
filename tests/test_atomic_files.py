"""write_atomically: interrupted writes and long file names."""

import pytest
import torch

from atomic_files import write_atomically


def interrupted_torch_save(file):
    """Raise what torch.save raises when Ctrl-C arrives inside its zip writer.

    The zip writer fails with a RuntimeError while the KeyboardInterrupt is being handled.
    """
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None


def test_interrupted_save_raises_interrupt(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"earlier checkpoint")

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted_torch_save)

    assert target.read_bytes() == b"earlier checkpoint"
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.pt"]


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
