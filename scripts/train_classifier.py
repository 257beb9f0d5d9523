"""Train the metric classifier (harness/metrics/classifier.py) and print its test accuracy.

    python -m scripts.train_classifier --dataset mnist --root /data
    python -m scripts.train_classifier --dataset shapes --resolution 16 --out clf.pt

Without --out it writes the default path the metrics look for,
<root>/.bssn_cache/classifiers/<dataset>-<resolution>px.pt. Prints the file, its sha256
(the weights' identity in every metric result) and the accuracy on the test split.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from data.datasets import DEFAULT_RESOLUTION
from data.stream import CACHE_DIR
from harness.metrics.classifier import default_weights_path
from harness.metrics.classifier_train import NUM_CLASSES, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(NUM_CLASSES), default="mnist")
    parser.add_argument("--root", default=os.environ.get("BSSN_DATA", "datasets"))
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    resolution = args.resolution or DEFAULT_RESOLUTION[args.dataset]
    out = args.out or default_weights_path(Path(args.root) / CACHE_DIR, args.dataset, resolution)
    meta = train_classifier(
        args.dataset, args.root, resolution, out, epochs=args.epochs, seed=args.seed
    )
    print(f"classifier: {meta['path']}")
    print(f"sha256: {meta['sha256']}")
    print(
        f"test accuracy: {meta['test_accuracy']:.4f} on {meta['num_test']} {args.dataset} "
        f"test images ({meta['epochs']} epochs, {meta['seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
