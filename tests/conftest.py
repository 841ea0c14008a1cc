"""Shared pytest configuration."""

import torch

torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
