"""KID and precision/recall of feature sets, computed by torch-fidelity (docs/metrics.md).

Thin wrappers that fix torch-fidelity's settings per protocol, so the numbers are
torch-fidelity's (and, with the same settings, stylegan2-ada-pytorch's): KID is the
unbiased MMD^2 under the cubic polynomial kernel (x.y / d + 1)^3, averaged over random
subsets drawn with a fixed seed; precision/recall is Kynkaanniemi et al. (2019)'s k-NN
manifold estimate (precision: the share of generated samples inside some real sample's
k-NN ball; recall: the converse).
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)
from torch_fidelity.metric_prc import (
    KEY_METRIC_F_SCORE,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)

#: torch-fidelity's default seed of the KID subsets.
KID_SEED = DEFAULTS["rng_seed"]
#: Rows of the distance matrix computed at once: 1000 x 50k floats is 200 MB.
PR_BATCH = 1000


def _tensor(features: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    features = torch.as_tensor(features)
    if features.dim() != 2:
        raise ValueError(f"{name} features must be [N, dim], got {tuple(features.shape)}")
    return features


def kernel_inception_distance(
    generated: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    subsets: int,
    subset_size: int,
    seed: int = KID_SEED,
) -> tuple[float, float, int]:
    """(mean, std, subset size) of KID over `subsets` random subsets.

    With fewer than `subset_size` samples on a side (reduced counts), each subset takes all
    of that side's size, as stylegan2-ada-pytorch does, instead of failing.
    """
    gen, ref = _tensor(generated, "generated"), _tensor(real, "real")
    size = min(subset_size, len(gen), len(ref))
    out = kid_features_to_metric(
        gen, ref, kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False
    )
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD], size


def precision_recall(
    generated: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor, neighborhood: int
) -> dict[str, float]:
    """{"precision", "recall", "f_score"} with k = `neighborhood` nearest neighbours."""
    gen, ref = _tensor(generated, "generated"), _tensor(real, "real")
    if min(len(gen), len(ref)) <= neighborhood:
        raise ValueError(
            f"precision/recall with k={neighborhood} needs more than {neighborhood} samples "
            f"per side, got {len(gen)} generated and {len(ref)} real"
        )
    out = prc_features_to_metric(
        gen.float(),
        ref.float(),
        prc_neighborhood=neighborhood,
        prc_batch_size=PR_BATCH,
        save_cpu_ram=True,  # blockwise distances: memory O(PR_BATCH * N), same result
        verbose=False,
    )
    return {
        "precision": out[KEY_METRIC_PRECISION],
        "recall": out[KEY_METRIC_RECALL],
        "f_score": out[KEY_METRIC_F_SCORE],
    }
