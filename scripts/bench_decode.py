"""Benchmark: building the uint8 training tensor of MNIST / CIFAR10 (img/s), two ways:

- ``arrays``: what training does now: open the dataset (torchvision reads its files into
  arrays) and take those arrays as one tensor (``data.stream._decode``), both timed;
- ``per image``: the PIL pipeline every image used to go through (``ImageSet[i]``), timed
  on the first ``--per-image`` images.

Both are checked to give identical images. Needs the dataset under ``--root`` (default
``$BSSN_DATA``, else ``datasets``) in torchvision's layout, extracted (MNIST's .gz files
are extracted by ``load_dataset(download=True)`` offline, into a writable root).

    python -m scripts.bench_decode --dataset mnist --root /data        # ~30 s
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from data import load_dataset
from data.stream import _decode


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    parser.add_argument("--root", default=os.environ.get("BSSN_DATA", "datasets"))
    parser.add_argument("--per-image", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = load_dataset(args.dataset, args.root, download=True)
    n, k = len(images), min(args.per_image, len(images))
    array_s, pil_s = [], []
    for _ in range(args.rounds):  # interleaved
        t0 = time.perf_counter()
        everything = _decode(load_dataset(args.dataset, args.root, download=False), 0, False)
        array_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        first = torch.stack([images[i] for i in range(k)])
        pil_s.append(time.perf_counter() - t0)
    assert torch.equal(everything[:k], first), "array path differs from the PIL pipeline"
    array_rate, pil_rate = n / min(array_s), k / min(pil_s)
    print(f"{args.dataset}: {n} images {tuple(everything.shape[1:])}, best of {args.rounds}")
    print("| path | img/s | time for the whole set |\n|---|---|---|")
    print(f"| arrays | {array_rate:,.0f} | {n / array_rate:.3f} s |")
    print(f"| per image (PIL) | {pil_rate:,.0f} | {n / pil_rate:.1f} s |")
    print(f"speed-up: {array_rate / pil_rate:.0f}x (goal: >= 100,000 img/s)")


if __name__ == "__main__":
    main()
