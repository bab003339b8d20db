"""Feeding the step: which samples each process reads at each step (batches), the DataLoader and its workers,
small tensors sent by value, and the read-ahead thread.
"""
