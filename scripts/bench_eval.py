"""Benchmark: the cost of one periodic evaluation (is50k + fid10k_5k, docs/metrics.md).

Times each phase of compute_metrics on the CIFAR10 CNN generator (32x32) at reduced
counts, then extrapolates linearly to the protocol's counts. The generated images are drawn
once for both metrics (50,000: is50k's; fid10k_5k uses the first 10,000), the 5,000 real
images only at the first evaluation (their statistics are cached), and the FID's 2048x2048
sqrtm costs the same at any count.

    python -m scripts.bench_eval --weights /path/weights-inception-2015-12-05-6726825d.pth
    python -m scripts.bench_eval --device cuda --num-gen 10000 --num-real 5000

The real images are the download-free shapes set at 32x32 (pass --dataset cifar10 --root
to use CIFAR10): the cost per image does not depend on their content.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from data import load_dataset
from harness.metrics import (
    PROTOCOLS,
    frechet_distance,
    inception_score,
    load_inception,
    reference_statistics,
    resolve_inception_weights,
    weights_sha256,
)
from harness.metrics.extractor import extract_generated
from models import build_models


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn, *args, **kwargs):
    sync(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    sync(device)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights", default=None, help="Inception weights (default: torch-fidelity's cache)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--num-gen", type=int, default=1000)
    parser.add_argument("--num-real", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--root", default="datasets")
    args = parser.parse_args()
    device = torch.device(args.device)

    weights = resolve_inception_weights(args.weights)
    extractor, t_load = timed(device, load_inception, weights, device)
    images = load_dataset(args.dataset, args.root, 32, download=False)
    torch.manual_seed(0)
    g = build_models("cnn", 32, 3)[0].to(device).eval()
    latents = torch.Generator(device=device).manual_seed(0)

    def sample(n: int) -> torch.Tensor:
        return g(torch.randn(n, g.z_dim, generator=latents, device=device))

    with tempfile.TemporaryDirectory() as cache:
        ref, t_real = timed(
            device,
            reference_statistics,
            images,
            args.num_real,
            extractor=extractor,
            weights_hash=weights_sha256(weights),
            cache_dir=cache,
            seed=0,
            batch_size=args.batch_size,
            progress=False,
        )
    generated, t_gen = timed(
        device,
        extract_generated,
        sample,
        g.output_range,
        extractor,
        stats_at=[args.num_gen],
        num_logits=args.num_gen,
        batch_size=args.batch_size,
        progress=False,
    )
    mu, sigma = generated.stats[args.num_gen]
    _, t_fid = timed(device, frechet_distance, mu, sigma, ref.mu, ref.sigma)
    _, t_is = timed(device, inception_score, generated.logits["tfgan"], PROTOCOLS["is50k"].splits)

    full_gen = max(PROTOCOLS["is50k"].num_gen, PROTOCOLS["fid10k_5k"].num_gen)
    full_real = PROTOCOLS["fid10k_5k"].num_real
    per_gen, per_real = t_gen / args.num_gen, t_real / args.num_real
    every_eval = full_gen * per_gen + t_fid + t_is * full_gen / args.num_gen
    first_extra = t_load + full_real * per_real
    threads = (
        torch.get_num_threads() if device.type == "cpu" else torch.cuda.get_device_name(device)
    )
    print(
        f"device {device} ({threads}{' threads' if device.type == 'cpu' else ''}), "
        f"torch {torch.__version__}, "
        f"batch {args.batch_size}"
    )
    print("| phase | measured | s |\n|---|---|---|")
    print(f"| load Inception | | {t_load:.1f} |")
    print(
        f"| real statistics | {args.num_real} images | {t_real:.1f} ({per_real * 1e3:.0f} ms/img) |"
    )
    print(
        f"| generate + extract | {args.num_gen} images | {t_gen:.1f} ({per_gen * 1e3:.0f} ms/img) |"
    )
    print(f"| FID distance (2048-d sqrtm) | | {t_fid:.1f} |")
    print(f"| IS (10 splits) | {args.num_gen} images | {t_is:.2f} |")
    print(
        f"extrapolated is50k + fid10k_5k: {every_eval / 60:.1f} min per evaluation "
        f"({full_gen} generated), plus {first_extra / 60:.1f} min at the first one "
        f"({full_real} real images, then cached)"
    )


if __name__ == "__main__":
    main()
