"""Time the reference pipeline and the fast path side by side, in one run on one machine.

For the dense network and the simple and final convnets it times one epoch three ways. An
epoch is what the scripts run between two result lines: the training steps over 60,000
images, then a pass over the 10,000 test images.

    reference  the original pipeline: torchvision dataset + PIL + ToTensor + Normalize per
               image, DataLoader, one-hot targets from Python lists, per-parameter SGD,
               loss.item() every step, the test set in mini-batches of 10
    fast       what the scripts run: TensorLoader, train_epoch, evaluate in mini-batches of
               1000
    floor      the fast training step and test pass on mini-batches made beforehand: the
               model alone

It also times building the extended training set (per-image loop against whole-tensor
slicing), loading its cache, and the peak memory of an --extend_data run, then prints the
results as Markdown tables with the targets. Ratios are comparable only within one run.

    python benchmarks/benchmark.py              # full epochs, about 15 minutes on 2 cores
    python benchmarks/benchmark.py --steps 600  # the first 600 mini-batches of each epoch
"""

import argparse
import itertools
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import cli  # noqa: E402
import common as c  # noqa: E402
import extended_data  # noqa: E402
import pytorch_mnist  # noqa: E402
import pytorch_mnist_convnet  # noqa: E402
import reference_pipeline as reference  # noqa: E402
from errors import UsageError  # noqa: E402

# Published learning rates of the networks timed here; the speed does not depend on them.
NETWORK_SETTINGS = {
    "dense": {"lr": pytorch_mnist.DEFAULT_LEARNING_RATE, "wd": 0.0},
    "simple": {"lr": 0.1, "wd": 0.0},
    "final": {"lr": 0.005, "wd": 0.0},
}

# Targets: the minimum speed-up over the reference, and the maximum fast/floor ratio.
SPEEDUP_TARGETS = {"dense": 10.0, "simple": 3.0, "final": 2.0}
FLOOR_RATIO_TARGET = 1.3
EXTENDED_BUILD_TARGET = 40.0
CACHE_LOAD_TARGET_SECONDS = 1.0
PEAK_MEMORY_TARGET_BYTES = 2 * 10**9

# Run in a child process so that its peak resident memory is measured on its own: an
# --extend_data run of the final network, from the cached extended set to test accuracy.
PEAK_MEMORY_SNIPPET = """
import itertools, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {repository!r})
import common as c, pytorch_mnist_convnet as convnet
torch.manual_seed(1)
config = {{"net": "final", "lr": 0.005, "wd": 0.0}}
model = convnet.build_model(config)
optimizer = convnet.build_optimizer(model, config)
loader = c.get_extended_train_loader(root={root!r})
loss_function = convnet.build_loss_function(config)
batches = itertools.islice(loader, {steps})
for images, labels in batches:
    optimizer.zero_grad(set_to_none=True)
    loss_function(model(images), labels).backward()
    optimizer.step()
c.evaluate(model, c.get_test_loader(c.EVAL_BATCH_SIZE, root={root!r}))
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) * 1024)
"""


class FirstBatches:
    """The first `steps` mini-batches of a loader, with a len() as train_epoch expects."""

    def __init__(self, loader, steps):
        self.loader = loader
        self.steps = min(steps, len(loader))

    def __len__(self):
        return self.steps

    def __iter__(self):
        return itertools.islice(self.loader, self.steps)


def build_network(name, fast):
    """Return (model, loss function, optimizer) of a network, fast or reference flavour."""
    settings = NETWORK_SETTINGS[name]
    if name == "dense":
        model = pytorch_mnist.Net()
        if fast:
            return model, pytorch_mnist.create_loss_function(nn.MSELoss()), pytorch_mnist.create_optimizer(
                model, settings["lr"]
            )

        def reference_loss(outputs, labels):
            return nn.functional.mse_loss(outputs, reference.expand_expected_output_per_sample(labels, 10))

        return model, reference_loss, reference.create_reference_optimizer(model, settings["lr"])

    config = {"net": name, **settings}
    model = pytorch_mnist_convnet.build_model(config)
    loss_function = pytorch_mnist_convnet.build_loss_function(config)
    if fast:
        return model, loss_function, pytorch_mnist_convnet.build_optimizer(model, config)
    return model, loss_function, reference.create_reference_optimizer(model, settings["lr"], settings["wd"])


def scaled_batch_count(loader, fraction):
    """Return how many of loader's mini-batches make up `fraction` of its epoch (at least one)."""
    return max(1, round(len(loader) * fraction))


def time_reference_epoch(name, steps, test_fraction, root):
    """Return the seconds of one reference epoch: the training steps, then the test pass."""
    torch.manual_seed(0)
    model, loss_function, optimizer = build_network(name, fast=False)
    train_loader = reference.get_reference_train_loader(root=root)
    test_loader = reference.get_reference_test_loader(root=root)
    test_batches = FirstBatches(test_loader, scaled_batch_count(test_loader, test_fraction))

    # Every timing builds both loaders before the clock starts, as the scripts do. Building the
    # test set frees blocks of several MB, after which glibc's malloc keeps blocks of that size
    # for reuse instead of unmapping them. Without that, each training step of the final
    # network page-faults about 2,000 times on Linux.
    start = time.perf_counter()
    reference.train_epoch_reference(model, FirstBatches(train_loader, steps), loss_function, optimizer)
    reference.evaluate_reference(model, test_batches)
    return time.perf_counter() - start


def time_fast_epoch(name, steps, test_fraction, root, channels_last=False, epochs=1, compile_model=False):
    """Return the seconds of each of `epochs` fast epochs, optionally with a CPU option."""
    torch.manual_seed(0)
    model, loss_function, optimizer = build_network(name, fast=True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model = torch.compile(model)
    train_loader = c.get_train_loader(root=root)
    test_loader = c.get_test_loader(c.EVAL_BATCH_SIZE, root=root)
    test_batches = FirstBatches(test_loader, scaled_batch_count(test_loader, test_fraction))

    seconds = []
    for _epoch in range(epochs):
        start = time.perf_counter()
        c.train_epoch(model, FirstBatches(train_loader, steps), loss_function, optimizer, 1, 1)
        c.evaluate(model, test_batches)
        seconds.append(time.perf_counter() - start)
    return seconds if epochs > 1 else seconds[0]


def time_floor_epoch(name, steps, test_fraction, root):
    """Return the seconds of the fast epoch on mini-batches made beforehand."""
    torch.manual_seed(0)
    model, loss_function, optimizer = build_network(name, fast=True)
    train_batches = list(FirstBatches(c.get_train_loader(root=root), steps))
    test_loader = c.get_test_loader(c.EVAL_BATCH_SIZE, root=root)
    test_batches = list(FirstBatches(test_loader, scaled_batch_count(test_loader, test_fraction)))

    start = time.perf_counter()
    c.train_epoch(model, train_batches, loss_function, optimizer, 1, 1)
    c.evaluate(model, test_batches)
    return time.perf_counter() - start


def time_extended_data(data_root):
    """Return seconds for the per-image build, the tensor build and a cache load."""
    training_set = c.get_dataset(data_root, train=True, transform=None)
    images, labels = training_set.data, training_set.targets

    start = time.perf_counter()
    reference.build_extended_data_per_image(images, labels)
    per_image_seconds = time.perf_counter() - start

    start = time.perf_counter()
    extended_data.build_extended_data(images, labels)
    tensor_seconds = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as cache_folder:
        extended_data.load_or_build_extended_data(cache_folder, images, labels)
        start = time.perf_counter()
        extended_data.load_or_build_extended_data(cache_folder, images, labels)
        cache_load_seconds = time.perf_counter() - start

    return per_image_seconds, tensor_seconds, cache_load_seconds


def measure_peak_memory(data_root, steps):
    """Return the peak resident memory in bytes of an --extend_data training child process (Linux only)."""
    c.get_extended_dataset(data_root)  # make sure the cache exists, so the child only loads it
    snippet = PEAK_MEMORY_SNIPPET.format(repository=str(REPOSITORY), root=str(data_root), steps=steps)
    # The child prints its own VmHWM (peak resident set). getrusage(RUSAGE_CHILDREN) would also
    # count the memory the child shared with this process between fork and exec.
    result = subprocess.run([sys.executable, "-c", snippet], check=True, capture_output=True, text=True)
    return int(result.stdout.split()[-1])


def machine_description():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}"
    )


def verdict(passed):
    return "yes" if passed else "NO"


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--steps",
        type=cli.positive_int,
        default=None,
        help="training mini-batches of 10 to time per epoch (default: all 6000); the test pass is cut to "
        "the same fraction of the test set",
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=list(NETWORK_SETTINGS),
        default=list(NETWORK_SETTINGS),
        help="networks to time (default: dense simple final)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=c.DEFAULT_DATA_DIR,
        help="folder that contains MNIST/raw (default: the repository's data/)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the dense network compiled with torch.compile (adds about a minute)",
    )
    args = parser.parse_args()
    full_steps = len(c.get_train_loader(root=args.data_dir))
    steps = min(args.steps or full_steps, full_steps)
    test_fraction = steps / full_steps
    default_threads = torch.get_num_threads()
    torch.set_num_threads(cli.DEFAULT_CPU_THREADS)

    print(f"Machine: {machine_description()}")
    print(f"Mini-batches timed per epoch: {steps} of 10 training images, then {test_fraction:.0%} of the test set\n")

    print(
        "| network | reference s | fast s | floor s | speed-up | target | reference / floor "
        "| fast / floor | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.networks:
        reference_seconds = time_reference_epoch(name, steps, test_fraction, args.data_dir)
        fast_seconds = time_fast_epoch(name, steps, test_fraction, args.data_dir)
        floor_seconds = time_floor_epoch(name, steps, test_fraction, args.data_dir)
        speedup = reference_seconds / fast_seconds
        largest_speedup = reference_seconds / floor_seconds
        floor_ratio = fast_seconds / floor_seconds
        print(
            f"| {name} | {reference_seconds:.1f} | {fast_seconds:.2f} | {floor_seconds:.2f} | "
            f"{speedup:.1f}x | >= {SPEEDUP_TARGETS[name]:.0f}x {verdict(speedup >= SPEEDUP_TARGETS[name])} | "
            f"{largest_speedup:.1f}x | "
            f"{floor_ratio:.2f} | <= {FLOOR_RATIO_TARGET} {verdict(floor_ratio <= FLOOR_RATIO_TARGET)} |",
            flush=True,
        )

    print(
        f"\n| network | fast s, {cli.DEFAULT_CPU_THREADS} thread (scripts' default) "
        f"| fast s, {default_threads} threads (torch's default) |"
    )
    print("|---|---|---|")
    for name in args.networks:
        single_seconds = time_fast_epoch(name, steps, test_fraction, args.data_dir)
        torch.set_num_threads(default_threads)
        multi_seconds = time_fast_epoch(name, steps, test_fraction, args.data_dir)
        torch.set_num_threads(cli.DEFAULT_CPU_THREADS)
        print(f"| {name} | {single_seconds:.2f} | {multi_seconds:.2f} |", flush=True)

    print("\n| CPU option | network | fast s, default | fast s, with the option |")
    print("|---|---|---|---|")
    for name in [name for name in args.networks if name != "dense"]:
        plain_seconds = time_fast_epoch(name, steps, test_fraction, args.data_dir)
        channels_last_seconds = time_fast_epoch(name, steps, test_fraction, args.data_dir, channels_last=True)
        print(f"| --channels-last | {name} | {plain_seconds:.2f} | {channels_last_seconds:.2f} |", flush=True)
    if args.compile:
        plain_seconds = time_fast_epoch("dense", steps, test_fraction, args.data_dir)
        first_seconds, second_seconds = time_fast_epoch(
            "dense", steps, test_fraction, args.data_dir, epochs=2, compile_model=True
        )
        print(
            f"| --compile | dense | {plain_seconds:.2f} | {second_seconds:.2f} "
            f"(first epoch, compiling: {first_seconds:.2f}) |",
            flush=True,
        )

    per_image_seconds, tensor_seconds, cache_load_seconds = time_extended_data(args.data_dir)
    build_speedup = per_image_seconds / tensor_seconds
    peak_bytes = measure_peak_memory(args.data_dir, steps=min(steps, 600))

    print("\n| extended data | seconds | result | target |")
    print("|---|---|---|---|")
    print(f"| per-image build (numpy.roll loop) | {per_image_seconds:.2f} | | |")
    print(
        f"| whole-tensor build | {tensor_seconds:.2f} | {build_speedup:.0f}x faster | "
        f">= {EXTENDED_BUILD_TARGET:.0f}x {verdict(build_speedup >= EXTENDED_BUILD_TARGET)} |"
    )
    print(
        f"| cache load (with CRC-32 check) | {cache_load_seconds:.2f} | | "
        f"< {CACHE_LOAD_TARGET_SECONDS:.0f} s {verdict(cache_load_seconds < CACHE_LOAD_TARGET_SECONDS)} |"
    )
    print(
        f"| peak memory, --extend_data final network | | {peak_bytes / 10**9:.2f} GB | "
        f"< 2 GB {verdict(peak_bytes < PEAK_MEMORY_TARGET_BYTES)} |"
    )


if __name__ == "__main__":
    try:
        main()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
