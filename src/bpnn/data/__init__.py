"""Datasets and splitting (scikit-learn's bundled datasets need nothing to download)."""
from .datasets import load_digits, train_test_split

__all__ = ["load_digits", "train_test_split"]
