"""Locating the Inception weights of torch-fidelity's `inception-v3-compat` (docs/metrics.md).

torch-fidelity downloads them with torch.hub.load_state_dict_from_url, which keeps the file
under <torch.hub.get_dir()>/checkpoints/ (by default $TORCH_HOME/hub/checkpoints). Offline
machines must be pointed at a local copy; random weights are never substituted.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import torch
import torch.hub
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

INCEPTION_WEIGHTS_URL = URL_INCEPTION_V3
INCEPTION_WEIGHTS_FILENAME = os.path.basename(URL_INCEPTION_V3)
#: torch.hub's naming convention: the file name ends in a prefix of the file's sha256.
OFFICIAL_SHA256_PREFIX = INCEPTION_WEIGHTS_FILENAME.rsplit("-", 1)[1].split(".")[0]


class InceptionWeightsNotFound(FileNotFoundError):
    """The Inception weights file is neither at the given path nor in torch-fidelity's cache."""


def inception_weights_cache_path() -> Path:
    """Where torch-fidelity (via torch.hub) stores and looks for the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILENAME


def resolve_inception_weights(path: str | os.PathLike | None, allow_download: bool = False) -> str:
    """Path of the Inception weights file.

    `path` given: it must be an existing file. Otherwise torch-fidelity's cache file; if it
    is missing, download it there when `allow_download`, else raise InceptionWeightsNotFound
    naming both ways to provide it.
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise InceptionWeightsNotFound(
                f"eval.inception_weights={path} is not a file; it must point at "
                f"{INCEPTION_WEIGHTS_FILENAME} (torch-fidelity's inception-v3-compat weights)"
            )
        return str(explicit)

    cached = inception_weights_cache_path()
    if cached.is_file():
        return str(cached)
    failure = "downloading is not allowed (eval.download_weights=false)"
    if allow_download:
        cached.parent.mkdir(parents=True, exist_ok=True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(60)  # an offline machine fails fast instead of hanging
        try:
            torch.hub.download_url_to_file(
                INCEPTION_WEIGHTS_URL, str(cached), hash_prefix=OFFICIAL_SHA256_PREFIX
            )
            return str(cached)
        except (OSError, RuntimeError) as err:  # URLError, timeouts, a hash mismatch
            failure = f"downloading it failed ({err})"
        finally:
            socket.setdefaulttimeout(previous)
    raise InceptionWeightsNotFound(
        f"Inception weights {INCEPTION_WEIGHTS_FILENAME} not found and {failure}. Either pass "
        f"eval.inception_weights=/path/to/{INCEPTION_WEIGHTS_FILENAME} "
        f"or place the file at {cached} (torch-fidelity's cache under TORCH_HOME). "
        f"It is published at {INCEPTION_WEIGHTS_URL}. On a cluster, fetch it once where the "
        "internet is with python -m harness.prepare <this run's overrides>. To train "
        "without IS/FID, pass eval=none."
    )


def weights_sha256(path: str | os.PathLike) -> str:
    """First 16 hex digits of the file's sha256: the weights' identity in cache keys and results."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class InvalidInceptionWeights(ValueError):
    """A weights file that is not a state dict of tensors (truncated, garbage, pickled code)."""


def is_official(sha256_16: str) -> bool:
    """Whether a weights_sha256 matches the official file (its name carries a sha256 prefix)."""
    return sha256_16.startswith(OFFICIAL_SHA256_PREFIX)


def check_inception_weights(path: str | os.PathLike) -> str:
    """Load the weights file now (start-up, not the first evaluation hours later) and return
    its weights_sha256; InvalidInceptionWeights names the file when it is not a state dict."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InvalidInceptionWeights(
            f"eval.inception_weights: {path} does not load as a state dict "
            f"({type(err).__name__}: {err}); it must be {INCEPTION_WEIGHTS_FILENAME}"
        ) from err
    if not (isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values())):
        raise InvalidInceptionWeights(
            f"eval.inception_weights: {path} is not a state dict of tensors; "
            f"it must be {INCEPTION_WEIGHTS_FILENAME}"
        )
    return weights_sha256(path)
