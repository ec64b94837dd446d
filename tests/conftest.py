"""Settings shared by all tests."""

import torch

# The scripts train with one CPU thread by default (see cli.py); the tests do the same, which
# also keeps them fast when other processes share the cores.
torch.set_num_threads(1)
