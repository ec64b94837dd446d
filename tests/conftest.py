"""Settings shared by all tests."""

import torch

# The scripts train with one CPU thread by default (see cli.py), and the tests do the same.
# One thread also keeps the tests fast when other processes share the cores.
torch.set_num_threads(1)
