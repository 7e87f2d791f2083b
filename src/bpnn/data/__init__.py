"""Datasets, CSV tables and splitting (scikit-learn's bundled datasets need nothing to download)."""
from .augment import ImageAugment
from .csv import read_csv
from .datasets import load_digits, train_test_split
from .divide import Division, divide, divideblock, divideind, divideint, dividerand, dividetrain
from .mnist import DatasetError, load_mnist
from .scaling import MinMaxScaler, mapminmax

__all__ = ["load_digits", "train_test_split", "load_mnist", "DatasetError", "read_csv",
           "MinMaxScaler", "mapminmax", "Division", "divide", "dividerand", "divideblock", "divideint",
           "divideind", "dividetrain", "ImageAugment"]
