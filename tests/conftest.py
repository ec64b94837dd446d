"""Settings shared by all tests."""

import torch

from allocator import keep_freed_memory

# The scripts train with one CPU thread by default (see cli.py), and the tests do the same.
# One thread also keeps the tests fast when other processes share the cores.
torch.set_num_threads(1)

# The scripts also keep freed memory for reuse, so the final convnet's training steps do not
# page-fault (see allocator.py).
keep_freed_memory()
