"""keep_freed_memory: the final convnet's training steps stop page-faulting, with unchanged weights."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent

# Trains the final convnet for a few mini-batches of real MNIST in a fresh process and prints
# the minor page faults per step and a checksum of the weights. A fresh process is needed
# because malloc settings cannot be undone.
TRAINING_SNIPPET = """
import hashlib, itertools, json, resource, sys
sys.path.insert(0, {repository!r})
import torch
import allocator, common as c, pytorch_mnist_convnet as convnet

torch.set_num_threads(1)
settings_applied = allocator.keep_freed_memory() if {keep_freed!r} else None
torch.manual_seed(1)
config = {{"net": "final", "lr": 0.005, "wd": 0.0}}
model = convnet.build_model(config)
optimizer = convnet.build_optimizer(model, config)
loss_function = convnet.build_loss_function(config)
batches = list(itertools.islice(c.get_train_loader(), 40))

def train_step(images, labels):
    optimizer.zero_grad(set_to_none=True)
    loss_function(model(images), labels).backward()
    optimizer.step()

for images, labels in batches[:10]:
    train_step(images, labels)
faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for images, labels in batches[10:]:
    train_step(images, labels)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before

digest = hashlib.sha256()
for parameter in model.parameters():
    digest.update(parameter.detach().numpy().tobytes())
print(json.dumps({{"applied": settings_applied, "faults_per_step": faults / 30, "weights": digest.hexdigest()}}))
"""


def train_final_network(keep_freed):
    snippet = TRAINING_SNIPPET.format(repository=str(REPOSITORY), keep_freed=keep_freed)
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt settings exist only in glibc")
def test_kept_memory_stops_page_faults():
    default_run = train_final_network(keep_freed=False)
    kept_run = train_final_network(keep_freed=True)

    assert kept_run["applied"] is True
    assert default_run["faults_per_step"] > 500
    assert kept_run["faults_per_step"] < 50
    assert kept_run["weights"] == default_run["weights"]
