"""Tests of the command line shared by pytorch_mnist.py and pytorch_mnist_convnet.py.

Training runs use the dense script as a subprocess, the way a reader runs it. Option checks,
checkpoint failures and evaluation call main(argv) in the test process, which skips the
start-up cost of a new interpreter. All runs use the MNIST files in data/ and the CPU.
"""

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import cli
import common as c
import pytorch_mnist
import pytorch_mnist_convnet
from checkpoints import save_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent

# Upper limit in seconds for one subprocess run, so a hung run fails instead of blocking.
RUN_TIMEOUT = 600

# Seconds after which a run that only has to reject its checkpoint counts as blocked. On a
# busy 2-core CPU such a run took about 4 s, most of it spent importing torch.
REJECTION_TIMEOUT = 120

# `Test data results: 0.9520, Epoch 1/2 (5.6 s, total 5.6 s)`
EPOCH_LINE = re.compile(
    r"^Test data results: (?P<accuracy>\d\.\d{4}), Epoch (?P<epoch>\d+)/(?P<epochs>\d+) "
    r"\((?P<seconds>\d+\.\d) s, total (?P<total>\d+\.\d) s\)$",
    re.MULTILINE,
)

# `Final test accuracy 0.9628 (epoch 2), best 0.9628 (epoch 2), total time 11.3 s`
SUMMARY_LINE = re.compile(
    r"^Final test accuracy (?P<final>\d\.\d{4}) \(epoch (?P<final_epoch>\d+)\), "
    r"best (?P<best>\d\.\d{4}) \(epoch (?P<best_epoch>\d+)\), total time (?P<total>\d+\.\d) s$",
    re.MULTILINE,
)

# `Epoch [1/1], Step [2000/6000], Loss: 0.0123`
STEP_LINE = re.compile(r"^Epoch \[1/1\], Step \[(?P<step>\d+)/6000\], Loss: 0\.\d{4}$", re.MULTILINE)

CHECKPOINT_KEYS = ["model_state", "optimizer_state", "config", "epoch", "history", "rng_state"]


SHARED_DEFAULTS = {
    "--batch-size": "10",
    "--seed": "1",
    "--device": "auto",
    "--threads": "1",
    "--data-dir": "the data/ folder beside the scripts",
    "--log-interval": "0",
    "--compile": "off",
    # These options have no default value to show, because leaving them out writes no file and starts no mode.
    "--save-model": None,
    "--resume": None,
    "--eval": None,
    "--metrics": None,
    "--plot": None,
    "--show-errors": None,
    "--predict": None,
    "--save-inputs": None,
}

DENSE_DEFAULTS = {"--epochs": "30", "--lr": "3.0", **SHARED_DEFAULTS}

CONVNET_DEFAULTS = {
    "--epochs": "60",
    "--lr": "0.1",
    **SHARED_DEFAULTS,
    "--net": "simple",
    "--wd": "0",
    "--extend_data": "off",
    "--extend-data": "off",
}

HELP_CASES = [
    pytest.param(pytorch_mnist, option, default, id=f"dense{option}") for option, default in DENSE_DEFAULTS.items()
] + [
    pytest.param(pytorch_mnist_convnet, option, default, id=f"convnet{option}")
    for option, default in CONVNET_DEFAULTS.items()
]
HELP_CASES += [
    pytest.param(script, "--quiet", "off", id=f"{name}--quiet")
    for name, script in (("dense", pytorch_mnist), ("convnet", pytorch_mnist_convnet))
]


def script_environment(**extra):
    """Return the environment of a script subprocess.

    Each run uses one OpenMP thread, whatever the script's own default is. On a two-core
    machine shared with other jobs (load average about 5), a dense epoch of pytorch_mnist.py
    took 108 s with PyTorch's default of two threads and 5.6 s with one.
    """
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    environment.update(extra)
    return environment


def run_script(script, *arguments, environment=None, timeout=RUN_TIMEOUT):
    """Run a script of the repository and return its CompletedProcess."""
    return subprocess.run(
        [sys.executable, script, *map(str, arguments)],
        cwd=REPO_ROOT,
        env=environment or script_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_success(result):
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout}\n{result.stderr}"


def epoch_accuracies(stdout):
    """Return {epoch: accuracy text} from the epoch lines of a run's output."""
    return {int(match["epoch"]): match["accuracy"] for match in EPOCH_LINE.finditer(stdout)}


def call_main(script, arguments, capsys):
    """Call script.main(arguments), which must exit, and return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def load_weights_only(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def fake_history(epochs):
    return [{"epoch": epoch, "accuracy": 0.1, "mean_loss": 2.3, "seconds": 1.0} for epoch in range(1, epochs + 1)]


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test on one CPU thread, as the subprocesses do, and restore the count afterwards.

    main() may change torch's thread count, and later tests must not inherit that change.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def run_two_epochs(folder):
    """Run `--epochs 2 --seed 7 --save-model <folder>/A.pt` and return (CompletedProcess, checkpoint path)."""
    folder.mkdir()
    checkpoint = folder / "A.pt"
    result = run_script("pytorch_mnist.py", "--epochs", 2, "--seed", 7, "--device", "cpu", "--save-model", checkpoint)
    check_success(result)
    return result, checkpoint


@pytest.fixture(scope="module")
def two_epoch_run(run_folder):
    return run_two_epochs(run_folder / "first")


@pytest.fixture(scope="module")
def repeated_run(run_folder):
    """The command line of two_epoch_run again, saving to another folder."""
    return run_two_epochs(run_folder / "repeat")


@pytest.fixture(scope="module")
def resumed_runs(run_folder):
    """Run `--epochs 1 --seed 7 --save-model B.pt`, then `--resume B.pt --epochs 2 --save-model B.pt`."""
    checkpoint = run_folder / "B.pt"
    first = run_script("pytorch_mnist.py", "--epochs", 1, "--seed", 7, "--device", "cpu", "--save-model", checkpoint)
    check_success(first)
    epoch_one = load_weights_only(checkpoint)

    second = run_script(
        "pytorch_mnist.py", "--resume", checkpoint, "--epochs", 2, "--device", "cpu", "--save-model", checkpoint
    )
    check_success(second)
    return first, second, epoch_one, checkpoint


def save_untrained_checkpoint(script, path):
    """Save the untrained default network of a ScriptSpec as its checkpoint after one epoch."""
    config = {
        "script": script.name,
        "epochs": 1,
        "lr": script.default_learning_rate,
        "batch_size": c.BATCH_SIZE,
        "seed": 1,
        **script.extra_defaults,
    }
    torch.manual_seed(1)
    model = script.build_model(config)
    optimizer = script.build_optimizer(model, config)
    save_checkpoint(path, model, optimizer, config, fake_history(1), torch.device("cpu"))
    return path


@pytest.fixture
def simple_convnet_checkpoint(tmp_path):
    """An untrained ConvNetSimple saved as a checkpoint of pytorch_mnist_convnet.py after one epoch."""
    return save_untrained_checkpoint(pytorch_mnist_convnet.SCRIPT, tmp_path / "simple.pt")


@pytest.fixture
def dense_checkpoint(tmp_path):
    """An untrained 784-100-10 network saved as a checkpoint of pytorch_mnist.py after one epoch."""
    return save_untrained_checkpoint(pytorch_mnist.SCRIPT, tmp_path / "dense.pt")


@pytest.fixture
def local_proxy(monkeypatch):
    """Start an HTTP proxy on localhost that closes every connection.

    Yields (environment, requests). The subprocess environment routes torchvision's MNIST
    download through the proxy, so the download fails at once and sends nothing beyond this
    machine. requests collects the start of every request that the proxy received.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    requests = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                requests.append(connection.recv(200))

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    environment = script_environment(http_proxy=url, https_proxy=url, HTTP_PROXY=url, HTTPS_PROXY=url)
    environment.pop("no_proxy", None)
    environment.pop("NO_PROXY", None)
    yield environment, requests
    server.close()


def option_help(help_text, option):
    """Return the --help entry of option, its invocation and text joined on one line, or None."""
    entries = []
    for line in help_text.splitlines():
        if line.startswith("  -"):
            # `  --extend_data, --extend-data` or `  --lr ETA    learning rate ...`
            invocation = line.strip().split("  ")[0]
            option_strings = [part.split()[0] for part in invocation.split(", ")]
            entries.append((option_strings, [line]))
        elif line.startswith("   ") and entries:
            entries[-1][1].append(line)

    for option_strings, lines in entries:
        if option in option_strings:
            return " ".join(" ".join(lines).split())
    return None


# --help


@pytest.mark.parametrize(("script", "option", "default"), HELP_CASES)
def test_help_lists_option_and_default(script, option, default, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    exit_code, out, _ = call_main(script, ["--help"], capsys)
    entry = option_help(out, option)

    assert exit_code == 0
    assert entry is not None, f"{option} missing from --help:\n{out}"
    if default is not None:
        assert re.search(rf"\(default: {re.escape(default)}[);]", entry), entry


# Reproducibility


def test_same_seed_same_accuracies(two_epoch_run, repeated_run):
    first, _ = two_epoch_run
    second, _ = repeated_run
    accuracies = epoch_accuracies(first.stdout)

    assert sorted(accuracies) == [1, 2]
    assert epoch_accuracies(second.stdout) == accuracies


def test_same_seed_same_weights(two_epoch_run, repeated_run):
    first = load_weights_only(two_epoch_run[1])["model_state"]
    second = load_weights_only(repeated_run[1])["model_state"]

    for name, tensor in first.items():
        assert torch.equal(second[name], tensor), name


def test_other_seed_other_accuracies(two_epoch_run):
    result = run_script("pytorch_mnist.py", "--epochs", 1, "--seed", 8, "--device", "cpu")
    check_success(result)

    assert epoch_accuracies(result.stdout)[1] != epoch_accuracies(two_epoch_run[0].stdout)[1]


# Summary and epoch lines


def test_epoch_lines_show_times(two_epoch_run):
    matches = list(EPOCH_LINE.finditer(two_epoch_run[0].stdout))
    first_seconds = float(matches[0]["seconds"])
    second_seconds = float(matches[1]["seconds"])

    assert [int(match["epoch"]) for match in matches] == [1, 2]
    assert float(matches[0]["total"]) == first_seconds
    assert float(matches[1]["total"]) == pytest.approx(first_seconds + second_seconds, abs=0.11)


def test_summary_line_ends_run(two_epoch_run):
    stdout = two_epoch_run[0].stdout
    last_line = stdout.strip().splitlines()[-1]
    summary = SUMMARY_LINE.match(last_line)
    epochs = list(EPOCH_LINE.finditer(stdout))
    best = max(epochs, key=lambda match: match["accuracy"])

    assert summary is not None, last_line
    assert summary["final"] == epochs[-1]["accuracy"]
    assert summary["final_epoch"] == "2"
    assert summary["best"] == best["accuracy"]
    assert summary["total"] == epochs[-1]["total"]


def test_training_run_stderr_empty(two_epoch_run):
    assert two_epoch_run[0].stderr == ""


# Checkpoints and --resume


def test_checkpoint_contents(two_epoch_run):
    checkpoint = load_weights_only(two_epoch_run[1])

    for key in CHECKPOINT_KEYS:
        assert key in checkpoint, key
    assert checkpoint["epoch"] == 2
    assert [record["epoch"] for record in checkpoint["history"]] == [1, 2]
    assert checkpoint["config"]["seed"] == 7
    assert checkpoint["config"]["lr"] == pytorch_mnist.DEFAULT_LEARNING_RATE


def test_checkpoint_leaves_no_temp_files(two_epoch_run):
    folder = two_epoch_run[1].parent

    assert sorted(path.name for path in folder.iterdir()) == ["A.pt"]


def test_resume_same_accuracies(two_epoch_run, resumed_runs):
    first, second, _, _ = resumed_runs
    expected = epoch_accuracies(two_epoch_run[0].stdout)

    assert epoch_accuracies(first.stdout) == {1: expected[1]}
    assert epoch_accuracies(second.stdout) == {2: expected[2]}
    assert "Resuming from" in second.stdout


def test_resume_same_weights(two_epoch_run, resumed_runs):
    uninterrupted = load_weights_only(two_epoch_run[1])["model_state"]
    resumed = load_weights_only(resumed_runs[3])

    assert resumed["epoch"] == 2
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed["model_state"][name], tensor), name


def test_resume_keeps_history(resumed_runs):
    _, second, epoch_one, checkpoint = resumed_runs
    history = load_weights_only(checkpoint)["history"]

    assert history[0] == epoch_one["history"][0]
    assert SUMMARY_LINE.search(second.stdout)["final_epoch"] == "2"


def test_resume_contradicting_lr(resumed_runs, capsys):
    checkpoint = resumed_runs[3]
    exit_code, _, err = call_main(pytorch_mnist, ["--resume", checkpoint, "--epochs", 3, "--lr", 0.5], capsys)

    assert exit_code == 1
    assert "--lr 0.5 contradicts the checkpoint" in err
    assert "--lr 3.0" in err


# --eval


def test_eval_prints_last_accuracy(two_epoch_run, capsys):
    result, checkpoint = two_epoch_run
    pytorch_mnist.main(["--eval", str(checkpoint), "--device", "cpu"])
    out = capsys.readouterr().out

    assert f"Test data results: {epoch_accuracies(result.stdout)[2]}, " in out
    assert f"from {checkpoint}, epoch 2" in out


def test_eval_dense_checkpoint_in_convnet(two_epoch_run, capsys):
    exit_code, _, err = call_main(pytorch_mnist_convnet, ["--eval", two_epoch_run[1]], capsys)

    assert exit_code == 1
    assert "was saved by pytorch_mnist.py, not pytorch_mnist_convnet.py" in err
    assert "Use it with pytorch_mnist.py" in err


def test_eval_convnet_checkpoint(simple_convnet_checkpoint, capsys):
    pytorch_mnist_convnet.main(["--eval", str(simple_convnet_checkpoint), "--device", "cpu"])
    out = capsys.readouterr().out

    expected = (
        rf"^Test data results: \d\.\d{{4}}, --net simple from {re.escape(str(simple_convnet_checkpoint))}, epoch 1$"
    )

    assert re.search(expected, out, re.MULTILINE), out


def test_eval_convnet_net_mismatch(simple_convnet_checkpoint, capsys):
    arguments = ["--eval", simple_convnet_checkpoint, "--net", "relu"]
    exit_code, _, err = call_main(pytorch_mnist_convnet, arguments, capsys)

    assert exit_code == 1
    assert "--net relu contradicts the checkpoint" in err
    assert "--net simple" in err


def test_eval_convnet_flag_mismatch(simple_convnet_checkpoint, capsys):
    arguments = ["--eval", simple_convnet_checkpoint, "--channels-last"]
    exit_code, _, err = call_main(pytorch_mnist_convnet, arguments, capsys)

    assert exit_code == 1
    assert "--channels-last contradicts the checkpoint, which was trained without --channels-last." in err
    assert "True" not in err


# Checkpoint files that cannot be used


def test_eval_missing_checkpoint(tmp_path, capsys):
    path = tmp_path / "missing.pt"
    exit_code, _, err = call_main(pytorch_mnist, ["--eval", path], capsys)

    assert exit_code == 1
    assert f"Checkpoint {path} not found" in err


def test_resume_missing_checkpoint(tmp_path, capsys):
    path = tmp_path / "missing.pt"
    exit_code, _, err = call_main(pytorch_mnist, ["--resume", path], capsys)

    assert exit_code == 1
    assert f"Checkpoint {path} not found" in err


def test_eval_folder_checkpoint(tmp_path, capsys):
    exit_code, _, err = call_main(pytorch_mnist, ["--eval", tmp_path], capsys)

    assert exit_code == 1
    assert f"Checkpoint {tmp_path} is a folder" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
@pytest.mark.parametrize("option", ["--eval", "--resume"])
def test_checkpoint_named_pipe_rejected(option, tmp_path):
    path = tmp_path / "pipe.pt"
    os.mkfifo(path)

    try:
        result = run_script("pytorch_mnist.py", option, path, "--device", "cpu", timeout=REJECTION_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{option} {path} blocked on reading the named pipe")

    assert result.returncode == 1
    assert f"Checkpoint {path} is not a regular file but a named pipe, socket or device" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_device_file_checkpoint(capsys):
    exit_code, _, err = call_main(pytorch_mnist, ["--eval", os.devnull], capsys)

    assert exit_code == 1
    assert f"Checkpoint {os.devnull} is not a regular file" in err


def test_eval_unreadable_checkpoint(two_epoch_run, tmp_path, capsys):
    path = tmp_path / "unreadable.pt"
    path.write_bytes(two_epoch_run[1].read_bytes())
    path.chmod(0)
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        pass
    else:
        path.chmod(0o600)
        pytest.skip("mode 000 does not block reading here (the tests run as root or with CAP_DAC_OVERRIDE)")

    try:
        exit_code, _, err = call_main(pytorch_mnist, ["--eval", path], capsys)
    finally:
        path.chmod(0o600)

    assert exit_code == 1
    assert f"Checkpoint {path} cannot be read: permission denied" in err


def test_eval_truncated_checkpoint(two_epoch_run, tmp_path, capsys):
    content = two_epoch_run[1].read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(content[: len(content) // 2])
    exit_code, _, err = call_main(pytorch_mnist, ["--eval", path], capsys)

    assert exit_code == 1
    assert f"Checkpoint {path} cannot be read" in err
    assert "truncated, damaged or not a PyTorch file" in err


def write_random_bytes(path):
    path.write_bytes(random.Random(0).randbytes(4096))


def write_tensor(path):
    torch.save(torch.zeros(3), path)


def write_text(path):
    path.write_text("This is a note, not a checkpoint.\n")


@pytest.mark.parametrize(
    ("write_file", "expected_message"),
    [
        pytest.param(write_random_bytes, "cannot be read", id="random-bytes"),
        pytest.param(write_tensor, "is not a checkpoint of these scripts", id="tensor"),
        pytest.param(write_text, "cannot be read", id="text"),
    ],
)
def test_eval_foreign_file(write_file, expected_message, tmp_path, capsys):
    path = tmp_path / "foreign.pt"
    write_file(path)
    exit_code, _, err = call_main(pytorch_mnist, ["--eval", path], capsys)

    assert exit_code == 1
    assert str(path) in err
    assert expected_message in err
    assert "Use a checkpoint written by --save-model" in err


# Options that --eval rejects


EVAL_REJECTED_CASES = [
    pytest.param(pytorch_mnist, "--epochs", ["--epochs", "3"], id="dense--epochs"),
    pytest.param(pytorch_mnist, "--lr", ["--lr", "3.0"], id="dense--lr"),
    pytest.param(pytorch_mnist, "--batch-size", ["--batch-size", "10"], id="dense--batch-size"),
    pytest.param(pytorch_mnist, "--seed", ["--seed", "1"], id="dense--seed"),
    pytest.param(pytorch_mnist, "--log-interval", ["--log-interval", "0"], id="dense--log-interval"),
    pytest.param(pytorch_mnist, "--quiet", ["--quiet"], id="dense--quiet"),
    pytest.param(pytorch_mnist, "--compile", ["--compile"], id="dense--compile"),
    pytest.param(pytorch_mnist_convnet, "--epochs", ["--epochs", "60"], id="convnet--epochs"),
    pytest.param(pytorch_mnist_convnet, "--wd", ["--wd", "0"], id="convnet--wd"),
    pytest.param(pytorch_mnist_convnet, "--extend_data", ["--extend_data"], id="convnet--extend_data"),
    pytest.param(pytorch_mnist_convnet, "--extend_data", ["--extend-data"], id="convnet--extend-data"),
]


@pytest.mark.parametrize(("script", "option", "arguments"), EVAL_REJECTED_CASES)
def test_eval_rejects_training_option(script, option, arguments, dense_checkpoint, capsys):
    exit_code, out, err = call_main(script, ["--eval", dense_checkpoint, *arguments], capsys)

    assert exit_code == 2
    assert f"--eval and {option} cannot be combined: --eval does not train" in err
    assert f"Leave {option} out." in err
    assert out == ""


def test_eval_accepts_running_options(dense_checkpoint, tmp_path, capsys):
    metrics = tmp_path / "metrics.csv"
    arguments = ["--eval", dense_checkpoint, "--device", "cpu", "--threads", "1", "--data-dir", c.DEFAULT_DATA_DIR]
    pytorch_mnist.main([str(argument) for argument in [*arguments, "--metrics", metrics]])
    out = capsys.readouterr().out

    assert f"from {dense_checkpoint}, epoch 1" in out
    assert metrics.read_text().startswith("epoch,accuracy,mean_loss,seconds")


def test_help_lists_eval_rejected_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _, out, _ = call_main(pytorch_mnist_convnet, ["--help"], capsys)
    entry = option_help(out, "--eval")

    for option in ["--epochs", "--lr", "--batch-size", "--seed", "--log-interval", "--quiet", "--compile", "--wd"]:
        assert f"{option}," in entry, option
    assert "--extend_data)" in entry


# --save-inputs next to the files of the run


def write_digit_image(path):
    """Write a 100x100 image of a black bar on white paper, which load_digit_image accepts."""
    pixels = torch.full((100, 100), 255, dtype=torch.uint8)
    pixels[20:80, 45:55] = 0
    Image.fromarray(pixels.numpy()).save(path)


@pytest.fixture
def digit_and_folder(tmp_path):
    """A digit image tmp_path/7.png and an empty folder tmp_path/seen for --save-inputs."""
    image = tmp_path / "7.png"
    write_digit_image(image)
    folder = tmp_path / "seen"
    folder.mkdir()
    return image, folder


def test_save_inputs_reports_folder(dense_checkpoint, digit_and_folder, capsys):
    image, folder = digit_and_folder

    pytorch_mnist.main(["--eval", str(dense_checkpoint), "--predict", str(image), "--save-inputs", str(folder)])
    out = capsys.readouterr().out

    assert f"Wrote the 28x28 network input of each image to {folder}" in out
    assert sorted(path.name for path in folder.iterdir()) == ["7-28x28.png"]


def test_save_inputs_keeps_input_image(dense_checkpoint, digit_and_folder, capsys):
    first_image, folder = digit_and_folder
    second_image = folder / "7-28x28.png"
    write_digit_image(second_image)
    second_content = second_image.read_bytes()

    arguments = ["--eval", dense_checkpoint, "--predict", first_image, second_image, "--save-inputs", folder]
    exit_code, out, err = call_main(pytorch_mnist, arguments, capsys)

    assert exit_code == 1
    assert f"would replace the input image {second_image}" in err
    assert out == ""
    assert second_image.read_bytes() == second_content
    assert sorted(path.name for path in folder.iterdir()) == ["7-28x28.png"]


def test_save_inputs_keeps_checkpoint(dense_checkpoint, digit_and_folder, capsys):
    image, folder = digit_and_folder
    checkpoint = folder / "7-28x28.png"
    checkpoint.write_bytes(dense_checkpoint.read_bytes())

    arguments = ["--eval", checkpoint, "--predict", image, "--save-inputs", folder]
    exit_code, out, err = call_main(pytorch_mnist, arguments, capsys)

    assert exit_code == 1
    assert f"would save an image as {checkpoint}, which is the file given to --eval" in err
    assert out == ""
    assert load_weights_only(checkpoint)["epoch"] == 1


def test_save_inputs_keeps_plot(dense_checkpoint, digit_and_folder, capsys):
    image, folder = digit_and_folder
    plot = folder / "7-28x28.png"

    arguments = ["--eval", dense_checkpoint, "--predict", image, "--save-inputs", folder, "--plot", plot]
    exit_code, out, err = call_main(pytorch_mnist, arguments, capsys)

    assert exit_code == 1
    assert f"would save an image as {plot}, which is the file given to --plot" in err
    assert out == ""
    assert list(folder.iterdir()) == []


# Option values


def test_log_interval_prints_steps(capsys):
    pytorch_mnist.main(["--epochs", "1", "--log-interval", "2000", "--device", "cpu"])
    out = capsys.readouterr().out

    assert [int(match["step"]) for match in STEP_LINE.finditer(out)] == [2000, 4000, 6000]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--log-interval", "-1"),
        ("--batch-size", "0"),
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--lr", "0"),
        ("--lr", "-2"),
        ("--lr", "abc"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--seed", "-1"),
    ],
)
def test_invalid_value_rejected(option, value, capsys):
    exit_code, out, err = call_main(pytorch_mnist, [option, value], capsys)

    assert exit_code == 2
    assert f"argument {option}: invalid value {value!r}" in err
    assert out == ""


def test_convnet_invalid_wd(capsys):
    exit_code, _, err = call_main(pytorch_mnist_convnet, ["--wd", "-0.1"], capsys)

    assert exit_code == 2
    assert "argument --wd: invalid value '-0.1'" in err


def test_convnet_unknown_net(capsys):
    exit_code, _, err = call_main(pytorch_mnist_convnet, ["--net", "lenet"], capsys)

    assert exit_code == 2
    assert "argument --net: invalid choice: 'lenet'" in err


def test_lr_above_float32_maximum(capsys):
    exit_code, _, err = call_main(pytorch_mnist, ["--lr", "1e39", "--epochs", "1", "--device", "cpu"], capsys)

    assert exit_code in (1, 2)
    assert "1e39" in err


def test_predict_needs_eval(tmp_path, capsys):
    exit_code, _, err = call_main(pytorch_mnist, ["--predict", tmp_path / "digit.png"], capsys)

    assert exit_code == 2
    assert "--predict needs --eval" in err


def test_data_dir_is_file(tmp_path, capsys):
    path = tmp_path / "data.txt"
    path.write_text("not a folder\n")
    exit_code, _, err = call_main(pytorch_mnist, ["--epochs", "1", "--device", "cpu", "--data-dir", path], capsys)

    assert exit_code == 1
    assert f"The data folder {path} is a file" in err


def test_data_dir_without_mnist(tmp_path, local_proxy):
    environment, requests = local_proxy
    result = run_script(
        "pytorch_mnist.py", "--epochs", 1, "--device", "cpu", "--data-dir", tmp_path, environment=environment
    )

    assert result.returncode == 1
    assert "MNIST data not found: " in result.stderr
    assert "train-images-idx3-ubyte" in result.stderr
    assert "train-labels-idx1-ubyte" in result.stderr
    assert str(tmp_path / "MNIST" / "raw") in result.stderr
    assert "Traceback" not in result.stderr
    assert requests, "the download did not go through the local proxy"


def test_device_unknown(capsys):
    exit_code, _, err = call_main(pytorch_mnist, ["--device", "nonsense"], capsys)

    assert exit_code == 1
    assert "--device 'nonsense' is not a device name" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_device_cuda_unavailable(capsys):
    exit_code, _, err = call_main(pytorch_mnist, ["--device", "cuda"], capsys)

    assert exit_code == 1
    assert "--device cuda: no cuda device is available here" in err


def test_save_model_missing_folder(tmp_path, capsys):
    folder = tmp_path / "missing"
    exit_code, out, err = call_main(pytorch_mnist, ["--epochs", "1", "--save-model", folder / "ck.pt"], capsys)

    assert exit_code == 1
    assert f"the folder {folder} does not exist" in err
    assert out == ""
    assert not folder.exists()


# Divergence


def test_train_network_diverges():
    config = {"net": "relu", "lr": 1e6, "wd": 0.0}
    torch.manual_seed(1)
    model = pytorch_mnist_convnet.build_model(config)
    optimizer = pytorch_mnist_convnet.build_optimizer(model, config)
    loader = c.get_train_loader(c.BATCH_SIZE)
    batches = [batch for _, batch in zip(range(20), loader)]

    with pytest.raises(c.TrainingDiverged) as error:
        c.train_network(model, batches, 1, pytorch_mnist_convnet.build_loss_function(config), optimizer, batches)

    assert re.search(r"at epoch 1, step \d+/20, with learning rate 1000000\.0", str(error.value)), str(error.value)


def test_diverging_run_exits(tmp_path):
    checkpoint = tmp_path / "ck.pt"
    result = run_script(
        "pytorch_mnist_convnet.py",
        *("--net", "relu", "--lr", 1000, "--epochs", 1, "--device", "cpu", "--save-model", checkpoint),
    )

    assert result.returncode == 1
    assert re.search(r"Training diverged: the loss became nan at epoch 1, step \d+/6000", result.stderr), result.stderr
    assert "with learning rate 1000.0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not checkpoint.exists()


# Ctrl-C


def restore_default_interrupt():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupt_saves_and_exits(tmp_path):
    checkpoint = tmp_path / "ck.pt"
    command = [sys.executable, "pytorch_mnist.py", "--epochs", "5", "--device", "cpu", "--save-model", str(checkpoint)]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=script_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The test runner may run with SIGINT ignored (nohup, a background job), and a child
        # would inherit that.
        preexec_fn=restore_default_interrupt,
    )
    watchdog = threading.Timer(RUN_TIMEOUT, process.kill)
    watchdog.start()
    try:
        for line in process.stdout:
            if EPOCH_LINE.match(line.rstrip("\n")):
                break
        # The checkpoint is written after the epoch line is printed.
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()

    saved = load_weights_only(checkpoint)
    message = err.strip().splitlines()

    assert process.returncode == 130
    assert len(message) == 1, err
    assert f"Interrupted. Epoch {saved['epoch']} is saved in {checkpoint}" in message[0]
    assert f"--resume {checkpoint}" in message[0]
    assert saved["epoch"] >= 1
    assert "Traceback" not in err


def test_resume_nothing_to_train(resumed_runs, capsys):
    checkpoint = resumed_runs[3]
    pytorch_mnist.main(["--resume", str(checkpoint), "--epochs", "1", "--device", "cpu"])
    out = capsys.readouterr().out

    assert "Nothing to train: the checkpoint" in out
    assert "Final test accuracy" in out


def test_channels_last_builds_nhwc_weights():
    parser = cli.make_parser(pytorch_mnist_convnet.SCRIPT)
    config = cli.build_config(pytorch_mnist_convnet.SCRIPT, parser.parse_args(["--net", "2conv", "--channels-last"]))
    model = pytorch_mnist_convnet.build_model(config)

    assert config["channels_last"] is True
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv2.weight.is_contiguous()


def test_channels_last_default_off():
    parser = cli.make_parser(pytorch_mnist_convnet.SCRIPT)
    config = cli.build_config(pytorch_mnist_convnet.SCRIPT, parser.parse_args(["--net", "2conv"]))
    model = pytorch_mnist_convnet.build_model(config)

    assert config["channels_last"] is False
    assert model.conv2.weight.is_contiguous()


def test_resume_keeps_saving_checkpoint(resumed_runs, tmp_path):
    checkpoint = tmp_path / "copy.pt"
    checkpoint.write_bytes(resumed_runs[3].read_bytes())

    result = run_script("pytorch_mnist.py", "--resume", checkpoint, "--epochs", 3, "--device", "cpu")
    check_success(result)

    assert load_weights_only(checkpoint)["epoch"] == 3


def test_metrics_cannot_replace_eval_checkpoint(two_epoch_run, tmp_path, capsys):
    checkpoint = tmp_path / "eval.pt"
    checkpoint.write_bytes(two_epoch_run[1].read_bytes())

    exit_code, _, err = call_main(pytorch_mnist, ["--eval", checkpoint, "--metrics", checkpoint], capsys)

    assert exit_code == 1
    assert "would replace the checkpoint given to --eval" in err
    assert load_weights_only(checkpoint)["epoch"] == 2


def test_two_outputs_same_file(tmp_path, capsys):
    path = tmp_path / "out.png"
    exit_code, _, err = call_main(pytorch_mnist, ["--plot", path, "--show-errors", path], capsys)

    assert exit_code == 1
    assert "name the same file" in err


def test_save_model_keeps_foreign_file(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")

    exit_code, _, err = call_main(pytorch_mnist, ["--epochs", "1", "--save-model", notes], capsys)

    assert exit_code == 1
    assert "exists and is not a checkpoint" in err
    assert notes.read_text() == "my notes\n"


def test_save_model_keeps_earlier_checkpoint(dense_checkpoint, capsys):
    content = dense_checkpoint.read_bytes()

    exit_code, out, err = call_main(pytorch_mnist, ["--epochs", "1", "--save-model", dense_checkpoint], capsys)

    assert exit_code == 1
    assert f"--save-model {dense_checkpoint} already contains a checkpoint" in err
    assert f"--resume {dense_checkpoint}" in err
    assert out == ""
    assert dense_checkpoint.read_bytes() == content


def test_save_model_trailing_slash(tmp_path, capsys):
    exit_code, _, err = call_main(pytorch_mnist, ["--epochs", "1", "--save-model", f"{tmp_path}/"], capsys)

    assert exit_code == 2
    assert "--save-model: invalid value" in err
    assert "names a folder" in err


def test_plot_keeps_predict_image(dense_checkpoint, digit_and_folder, capsys):
    image, _folder = digit_and_folder
    content = image.read_bytes()

    arguments = ["--eval", dense_checkpoint, "--predict", image, "--plot", image]
    exit_code, out, err = call_main(pytorch_mnist, arguments, capsys)

    assert exit_code == 1
    assert f"--plot {image} would replace the image given to --predict" in err
    assert out == ""
    assert image.read_bytes() == content


def test_metrics_keeps_other_file(dense_checkpoint, tmp_path, capsys):
    notes = tmp_path / "notes.md"
    notes.write_text("# My notes\n")

    exit_code, _, err = call_main(pytorch_mnist, ["--eval", dense_checkpoint, "--metrics", notes], capsys)

    assert exit_code == 1
    assert f"--metrics {notes} exists and is not a metrics CSV file" in err
    assert notes.read_text() == "# My notes\n"


def test_metrics_replaces_earlier_metrics(dense_checkpoint, tmp_path, capsys):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,accuracy,mean_loss,seconds\n1,0.5,1.0,2.0\n")

    pytorch_mnist.main(["--eval", str(dense_checkpoint), "--metrics", str(metrics)])

    assert "Wrote per-epoch metrics" in capsys.readouterr().out
    assert metrics.read_text().splitlines()[1].startswith("1,0.1,")


def test_closed_stdout_exits_quietly(dense_checkpoint):
    process = subprocess.Popen(
        [sys.executable, "pytorch_mnist.py", "--eval", str(dense_checkpoint)],
        cwd=REPO_ROOT,
        env=script_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=RUN_TIMEOUT)

    assert process.returncode == cli.BROKEN_PIPE_EXIT_STATUS
    assert stderr == ""


def test_text_file_as_checkpoint(tmp_path, capsys):
    path = tmp_path / "text.pt"
    path.write_text("hello\n")

    exit_code, _, err = call_main(pytorch_mnist, ["--eval", path], capsys)

    assert exit_code == 1
    assert "cannot be read" in err
    assert "Traceback" not in err


def test_checkpoint_without_history(two_epoch_run, tmp_path, capsys):
    content = load_weights_only(two_epoch_run[1])
    del content["history"]
    path = tmp_path / "no-history.pt"
    torch.save(content, path)

    exit_code, _, err = call_main(pytorch_mnist, ["--eval", path], capsys)

    assert exit_code == 1
    assert "history missing" in err


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["--seed", str(2**64)], "must be at most"),
        (["--threads", "100000"], "CPUs"),
        (["--data-dir", ""], "expected a path"),
    ],
    ids=["huge_seed", "huge_threads", "empty_data_dir"],
)
def test_out_of_range_rejected(arguments, fragment, capsys):
    exit_code, _, err = call_main(pytorch_mnist, arguments, capsys)

    assert exit_code == 2
    assert fragment in err
