"""Counting and logging what the data plane does."""
