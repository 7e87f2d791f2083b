"""Datasets and splitting (scikit-learn's bundled datasets need nothing to download)."""
from .datasets import load_digits, train_test_split
from .mnist import DatasetError, load_mnist

__all__ = ["load_digits", "train_test_split", "load_mnist", "DatasetError"]
