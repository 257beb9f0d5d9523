"""Datasets and the training input pipeline (SPEC sections 3-5)."""

from data.datasets import DATASETS, DatasetNotFoundError, ImageSet, load_dataset
from data.stream import BatchStream

__all__ = ["DATASETS", "BatchStream", "DatasetNotFoundError", "ImageSet", "load_dataset"]
