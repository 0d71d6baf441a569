"""Test-session settings: one torch thread per process, the project's own policy (README, *Threads*).

Tests that train small models directly (not through ``evalsuite run``, which sets its own
thread count) would otherwise use every core; on a shared 2-core machine two-thread training
beside another busy process slowed by an order of magnitude. Tests that check thread
handling set their counts explicitly.
"""
import torch

torch.set_num_threads(1)
