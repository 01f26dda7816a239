"""Preparing the real benchmark datasets: checking a tree, fetching the split files."""
