"""Datasets and the training input pipeline (docs/training.md, docs/metrics.md)."""

from data.datasets import DATASETS, DatasetNotFoundError, ImageSet, load_dataset
from data.stream import BatchStream

__all__ = ["DATASETS", "BatchStream", "DatasetNotFoundError", "ImageSet", "load_dataset"]
