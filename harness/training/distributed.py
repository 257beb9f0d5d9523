"""Single process or DDP under torchrun or a submitit (SLURM) job, on CPU (gloo) or GPUs (nccl)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def export_submitit_env() -> bool:
    """Under a submitit job, set torchrun's variables from SLURM's; True when it set them.

    submitit (``launcher=slurm``) starts one process per task, tasks_per_node = GPUs per
    node, but sets none of RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT that
    ``setup`` and ``init_process_group`` read. Under torchrun (WORLD_SIZE already set) and
    outside submitit this does nothing. The master is the job's first node; the port is
    MASTER_PORT when set, else drawn from the job id, so every task of a job agrees.
    """
    if "SUBMITIT_EXECUTOR" not in os.environ or "WORLD_SIZE" in os.environ:
        return False
    from submitit.helpers import TorchDistributedEnvironment

    # Each task sees all of the node's GPUs and picks cuda:LOCAL_RANK (as under torchrun).
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return True


def setup(device: str) -> Context:
    """Join the process group when launched by torchrun or submitit (WORLD_SIZE > 1),
    else run alone."""
    export_submitit_env()
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "train.device=cuda but torch sees no CUDA device; use train.device=cpu or auto"
        )
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(0, 1, torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(
        dist.get_rank(), world_size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    )


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose statistics cover the global batch of all ranks.

    torch's SyncBatchNorm does this on GPUs only; this version all-reduces the per-channel
    sums (autograd-aware) on any backend, so a DDP run on CPU normalizes exactly as the
    single-process run with the same global batch (the paper's setting: batch 64, one GPU).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = x.new_full((1,), x.numel() / c)
        local = torch.cat([x.sum(dims), x.square().sum(dims), count])
        stats = collectives.all_reduce(local, "sum", dist.group.WORLD)  # differentiable
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm of ``module`` over the global batch: torch's on CUDA, ours elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if child.momentum is None:
                raise ValueError(
                    "GlobalBatchNorm needs a momentum (cumulative averages unsupported)"
                )
            replacement = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement.to(device))
        else:
            sync_batchnorm(child, device)
    return module
