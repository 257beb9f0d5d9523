"""The training loop of docs/training.md, one code path for every mode and device.

Per iteration: ``n_dis`` discriminator steps, each advancing D's power iteration exactly
once (``bssn.discriminator_step``), then one generator step that reuses D's sigma
(``bssn.frozen``). Every random draw of a step (latents, gradient-penalty mixing) is taken
for the global batch from one generator seeded identically on every rank, and each rank
keeps its slice: a DDP run trains on exactly the batches of the single-process run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchvision.utils import save_image
from tqdm import tqdm

import bssn
from bssn import analysis
from data import BatchStream, ImageSet, load_dataset
from harness import allocator, threads
from models import build_models

from . import checkpoint, diagnostics, distributed, losses, periodic_eval
from .batchnorm import running_stats_kept
from .config import config_differences, init_power_iterations_for, to_container, validate
from .run_lock import RunLock
from .run_log import RunLog
from .stop_signals import GracefulStop

log = logging.getLogger(__name__)

#: Fixed latents for sample grids are drawn from this offset of the run's seed.
SAMPLE_SEED_OFFSET = 2**20
GRID_SIZE = 64


class NonFiniteLossError(FloatingPointError):
    pass


class ConfigMismatchError(ValueError):
    pass


def build(
    cfg: DictConfig, images: ImageSet, ctx: distributed.Context
) -> tuple[nn.Module, nn.Module]:
    """G and D on ``ctx.device``, D normalized as ``cfg.norm`` says, identical on every rank."""
    torch.manual_seed(cfg.seed)
    g, d = build_models(
        cfg.model.name,
        images.resolution,
        images.channels,
        cfg.model.z_dim,
        cfg.model.negative_slope,
        cfg.model.width,
    )
    bssn.apply(
        d,
        cfg.norm.mode,
        cfg.scale,
        cfg.norm.n_power_iterations,
        input_size=(images.channels, images.resolution, images.resolution),
        negative_slope=cfg.model.negative_slope,
        init_power_iterations=init_power_iterations_for(cfg.norm),
    )
    if cfg.norm.layer_scales_geomean is not None:  # the Thm. 1 experiment (Fig. 3)
        scales = analysis.thm1.apply_random_layer_scales(
            d,
            cfg.norm.layer_scales_geomean,
            cfg.norm.layer_scales_log_std,
            cfg.norm.layer_scales_seed,
        )
        log.info("per-layer spectral norms (Thm. 1): %s", scales)
    if ctx.distributed and cfg.train.sync_batchnorm:
        g = distributed.sync_batchnorm(g, ctx.device)
    return g.to(ctx.device), d.to(ctx.device)


def _adam(params: Any, lr: float, cfg: DictConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(cfg.optim.beta1, cfg.optim.beta2))


def _local(batch: int, ctx: distributed.Context, key: str) -> slice:
    if batch % ctx.world_size:
        raise ValueError(f"{key}={batch} is not divisible by the {ctx.world_size} DDP processes")
    n = batch // ctx.world_size
    return slice(ctx.rank * n, (ctx.rank + 1) * n)


def _global_randn(gen: torch.Generator, shape: tuple[int, ...], part: slice) -> Tensor:
    return torch.randn(shape, generator=gen, device=gen.device)[part]


def _global_rand(gen: torch.Generator, shape: tuple[int, ...], part: slice) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device)[part]


def _save_grid(g: nn.Module, z: Tensor, path: Path) -> None:
    was_training = g.training
    g.eval()
    with torch.no_grad():
        samples = g(z)
    g.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(samples, path, nrow=8, normalize=True, value_range=g.output_range)


def discriminator_update(
    d_train: nn.Module,
    d_raw: nn.Module,
    g_train: nn.Module,
    opt_d: torch.optim.Optimizer,
    real: Tensor,
    z: Tensor,
    loss: str = "hinge",
    gp_weight: float = 0.0,
    eps: Tensor | None = None,
    bn_stats_on_d_step: bool = True,
) -> dict[str, Tensor]:
    """One D step: ``hinge``, or ``wgan_gp``: the WGAN loss plus ``gp_weight`` times the
    gradient penalty on mixes ``eps`` (``gp_weight`` 0: plain WGAN, the paper's App. J).

    The power iteration advances once, at the start (the real pass's update), and every
    pass of the step reuses that sigma (docs/normalization.md). With
    ``bn_stats_on_d_step=False`` G's forward here leaves its batch-norm running statistics
    unchanged (the reference ResNet's rule).
    """
    with torch.no_grad(), running_stats_kept(g_train, keep=not bn_stats_on_d_step):
        fake = g_train(z)
    with bssn.discriminator_step(d_train):
        out = d_train(torch.cat([real, fake]))  # one pass: D has no batch statistics
        d_real, d_fake = out[: len(real)], out[len(real) :]
        result = {"d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}
        if loss == "wgan_gp":
            d_loss = losses.wgan_d(d_real, d_fake)
            if gp_weight:
                gp = losses.gradient_penalty(d_raw, real, fake, eps)
                d_loss = d_loss + gp_weight * gp
                result["gradient_penalty"] = gp.detach()
        else:
            d_loss = losses.hinge_d(d_real, d_fake)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return result | {"d_loss": d_loss.detach(), "real": real, "fake": fake}


def generator_update(
    d_raw: nn.Module, g_train: nn.Module, opt_g: torch.optim.Optimizer, z: Tensor
) -> Tensor:
    """One G step against D's current sigma (never advances; -mean D(G(z)) for both losses).

    D's weights need no gradient here, and D runs outside DDP: there is nothing to reduce.
    """
    d_raw.requires_grad_(False)
    try:
        with bssn.frozen(d_raw):
            g_loss = losses.hinge_g(d_raw(g_train(z)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
    finally:
        d_raw.requires_grad_(True)
    return g_loss.detach()


def _log_scalars(d_raw: nn.Module, d_out: dict[str, Tensor], g_loss: Tensor) -> dict[str, float]:
    """Losses, D outputs, input- and weight-gradient norms and sigmas: every scalar is
    computed on the device and copied to the host at once (one sync per log step)."""
    on_device = {k: v for k, v in d_out.items() if k not in ("real", "fake")}
    on_device["g_loss"] = g_loss
    real_norm, fake_norm = diagnostics.input_gradient_norms(d_raw, d_out["real"], d_out["fake"])
    on_device |= {"input_grad_norm/real": real_norm, "input_grad_norm/fake": fake_norm}
    on_device |= {
        f"grad_norm/{k}": v for k, v in diagnostics.layer_gradient_norm_tensors(d_raw).items()
    }
    return diagnostics.to_floats(on_device) | diagnostics.flatten_sigmas(d_raw)


def compile_steps(
    g_train: nn.Module,
    d_train: nn.Module,
    d_raw: nn.Module,
    mode: str = "default",
    backend: str = "inductor",
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """torch.compile G, D (as the D step runs it, DDP included) and D for the G step.

    Forward and backward of each are compiled (AOTAutograd); the power-iteration advance
    and the optimizer steps stay eager. ``mode="reduce-overhead"`` adds CUDA graphs on GPU.
    D's forward is traced twice (weights requiring grad in the D step, not in the G step).
    """
    options = {"backend": backend} if backend != "inductor" else {"mode": mode}
    g = torch.compile(g_train, **options)
    d = torch.compile(d_train, **options)
    d_for_g = d if d_train is d_raw else torch.compile(d_raw, **options)
    return g, d, d_for_g


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir``; returns the run's summary."""
    validate(cfg)
    if cfg.eval.every:
        # Missing weights fail now, not hours later; a missing classifier is trained now.
        periodic_eval.preflight(cfg.eval, cfg.dataset)
    ctx = distributed.setup(cfg.train.device)
    try:
        # Rank 0 holds the run directory before writing anything in it (run_lock.py).
        lock = RunLock(Path(run_dir)) if ctx.is_main else None
        if lock is not None:
            lock.acquire()
        try:
            with GracefulStop() as stop:
                return _train(cfg, Path(run_dir), ctx, stop)
        finally:
            if lock is not None:
                lock.release()
    finally:
        distributed.teardown(ctx)


def _resume_point(
    cfg: DictConfig, run_dir: Path, config: dict
) -> tuple[dict[str, Any], Path] | None:
    """The newest valid checkpoint, after removing temporary files of killed writes."""
    checkpoint.remove_stale_temporaries(run_dir)
    try:
        loaded = checkpoint.load_latest(run_dir)
    except checkpoint.NoValidCheckpointError:
        if not cfg.train.start_over:
            raise
        moved = checkpoint.set_aside_invalid(run_dir)
        log.warning("train.start_over=true: starting from 0; set aside %s", moved)
        return None
    if loaded is not None:
        state, path = loaded
        differences = config_differences(state["config"], config)
        if differences:
            raise ConfigMismatchError(
                f"{path} was written by a run with another configuration; differing keys:\n  "
                + "\n  ".join(differences)
                + "\nUse another run_name (or out_dir) for this configuration, "
                + f"or delete {run_dir}."
            )
    return loaded


def _stop_requested(stop: GracefulStop, ctx: distributed.Context) -> bool:
    """Whether any rank received a stop signal: all ranks stop at the same iteration."""
    if not ctx.distributed:
        return stop.received is not None
    flag = torch.tensor([stop.received is not None], dtype=torch.int32, device=ctx.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _train(
    cfg: DictConfig, run_dir: Path, ctx: distributed.Context, stop: GracefulStop
) -> dict[str, Any]:
    config = to_container(cfg)
    t = cfg.train
    # On the CPU the thread count changes float rounding, so it stays fixed for a run (and a
    # resume keeps the count saved in its checkpoint: it continues identically); on a GPU
    # the CPU threads only feed it and may follow the machine's load.
    on_cpu = torch.device(ctx.device).type == "cpu"
    cpu_threads = threads.configure(t.threads, follow_load=not on_cpu)
    allocator.keep_freed_memory()  # steps re-allocate the same sizes: reuse, not page faults
    d_part = _local(t.batch_size, ctx, "train.batch_size")
    g_batch = t.g_batch_size or t.batch_size
    g_part = _local(g_batch, ctx, "train.g_batch_size")

    # Rank 0 downloads or decodes first; the others then find the files (and cache) ready.
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        images = load_dataset(
            cfg.dataset.name, cfg.dataset.root, cfg.dataset.resolution, cfg.dataset.download
        )
    distributed.barrier(ctx)
    if not ctx.is_main:
        images = load_dataset(
            cfg.dataset.name, cfg.dataset.root, cfg.dataset.resolution, cfg.dataset.download
        )

    g_raw, d_raw = build(cfg, images, ctx)
    opt_g, opt_d = (
        _adam(g_raw.parameters(), cfg.optim.lr_g, cfg),
        _adam(d_raw.parameters(), cfg.optim.lr_d, cfg),
    )
    workers = min(cfg.dataset.num_workers, os.cpu_count() or 1)  # more only oversubscribes
    stream = BatchStream(
        images,
        t.batch_size,
        cfg.seed,
        ctx.device,
        ctx.rank,
        ctx.world_size,
        workers,
        cache_dir=cfg.dataset.cache_dir,
    )
    noise = torch.Generator(device=ctx.device).manual_seed(cfg.seed)
    fixed_z = torch.randn(
        GRID_SIZE,
        cfg.model.z_dim,
        generator=torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED_OFFSET),
    ).to(ctx.device)
    checkpoint.seed_all(cfg.seed + ctx.rank)  # each rank's own streams for anything else

    start, wandb_id, last_saved = 0, None, None
    loaded = _resume_point(cfg, run_dir, config) if ctx.is_main else None
    if ctx.distributed:  # the other ranks load the checkpoint rank 0 validated
        shared = [loaded[1] if loaded else None]
        torch.distributed.broadcast_object_list(shared, src=0)
        loaded = (
            (checkpoint.load(shared[0]), shared[0]) if shared[0] and not ctx.is_main else loaded
        )
    if loaded is not None:
        state, path = loaded
        g_raw.load_state_dict(state["G"])
        d_raw.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        stream.load_state_dict(state["stream"])
        checkpoint.set_rng_state(state["rng"], noise)  # rank 0's states (see the save)
        if not ctx.is_main:
            checkpoint.seed_all(cfg.seed + ctx.rank + state["step"])
        start, wandb_id, last_saved = state["step"], state["wandb_id"], path
        if on_cpu and threads.is_automatic(t.threads) and "cpu_threads" in state:
            torch.set_num_threads(int(state["cpu_threads"]))
        if ctx.is_main:
            log.info("resuming %s from step %d (%s)", run_dir, start, path.name)

    if ctx.is_main:
        OmegaConf.save(OmegaConf.create(config), run_dir / "config.yaml")
    if start >= t.iterations:
        if ctx.is_main:
            log.info("%s already finished (%d/%d iterations)", run_dir, start, t.iterations)
        return {"step": start, "resumed_from": start}

    g_train, d_train = g_raw, d_raw
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        g_train = nn.parallel.DistributedDataParallel(g_raw, device_ids=ids)
        # u, v evolve identically on every rank (same weights, same deterministic steps):
        # no per-forward broadcast needed (bssn.power_iteration's docs).
        d_train = nn.parallel.DistributedDataParallel(
            d_raw, device_ids=ids, forward_sync_buffers=False
        )
    d_for_g = d_raw  # the G step runs D outside DDP: nothing to reduce
    if t.compile:
        g_train, d_train, d_for_g = compile_steps(g_train, d_train, d_raw, t.compile_mode)

    run_log = None
    evaluator = (
        periodic_eval.PeriodicEval(cfg, run_dir, images, ctx.device, start)
        if ctx.is_main and cfg.eval.every
        else None
    )
    if ctx.is_main:
        run_log = RunLog(
            run_dir,
            config,
            cfg.logger.wandb,
            cfg.logger.tensorboard,
            resume_step=start,  # from 0: an earlier attempt's lines are dropped
            wandb_id=wandb_id,
        )
    if ctx.is_main:
        log.info("training %s: iterations %d..%d", run_dir, start + 1, t.iterations)
    bar = tqdm(
        total=t.iterations,
        initial=start,
        desc=run_dir.name,
        dynamic_ncols=True,
        disable=not (ctx.is_main and cfg.logger.progress),
    )
    d_shape = (t.batch_size, cfg.model.z_dim)
    g_shape = (g_batch, cfg.model.z_dim)
    gp_shape = (t.batch_size, 1, 1, 1)
    gp_weight = cfg.loss.gp_weight if cfg.loss.name == "wgan_gp" else 0.0  # hinge: no penalty
    bad = torch.zeros((), dtype=torch.bool, device=ctx.device)  # any non-finite loss, no sync
    last_good = start

    def save(step: int) -> Path:
        bad_weights = checkpoint.non_finite_tensors(
            {"G": g_raw.state_dict(), "D": d_raw.state_dict()}
        )
        if bad_weights:
            raise NonFiniteLossError(
                f"weights became NaN/Inf by iteration {step} ({', '.join(bad_weights[:3])}); "
                f"nothing was saved, and the last good checkpoint is {last_saved or 'none'}"
            )
        return checkpoint.save_checkpoint(
            run_dir,
            step,
            {
                "step": step,
                "G": g_raw.state_dict(),
                "D": d_raw.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "stream": stream.state_dict(),
                # Rank 0's states: every step's draws come from `noise`, equal on all ranks.
                "rng": checkpoint.rng_state(noise),
                "config": config,
                "wandb_id": run_log.wandb_id,
                "format": checkpoint.FORMAT,
                "cpu_threads": torch.get_num_threads(),
            },
            t.keep_checkpoints,
        )

    tick, tick_step = time.perf_counter(), start
    for it in range(start, t.iterations):
        for _ in range(t.n_dis):
            real = stream.next()
            z = _global_randn(noise, d_shape, d_part)
            eps = _global_rand(noise, gp_shape, d_part) if gp_weight else None
            d_out = discriminator_update(
                d_train, d_raw, g_train, opt_d, real, z, cfg.loss.name, gp_weight, eps,
                bn_stats_on_d_step=cfg.model.bn_stats_on_d_step,
            )  # fmt: skip
            bad |= ~torch.isfinite(d_out["d_loss"])
        g_loss = generator_update(d_for_g, g_train, opt_g, _global_randn(noise, g_shape, g_part))
        bad |= ~torch.isfinite(g_loss)
        step = it + 1
        bar.update(1)
        threads.update(cpu_threads)  # fewer threads while other processes keep CPUs busy

        logging_now = step % t.log_freq == 0 or step == t.iterations
        analysis_now = t.analysis_freq and (step % t.analysis_freq == 0 or step == t.iterations)
        saving_now = (t.ckpt_freq and step % t.ckpt_freq == 0) or step == t.iterations
        evaluating_now = cfg.eval.every and (step % cfg.eval.every == 0 or step == t.iterations)
        if logging_now or analysis_now or saving_now or evaluating_now:
            if bad.item():
                raise NonFiniteLossError(
                    f"a loss became NaN/Inf between iterations {last_good} and {step}; the run "
                    "stopped without saving, and the last good checkpoint is "
                    + (str(last_saved) if last_saved else "none (no checkpoint was written yet)")
                )
            last_good = step
        if (logging_now or analysis_now) and run_log is not None:
            scalars = {}
            if logging_now:
                now = time.perf_counter()
                scalars = _log_scalars(d_raw, d_out, g_loss) | {
                    "it_per_s": (step - tick_step) / (now - tick)
                }
                bar.set_postfix(
                    d_loss=f"{scalars['d_loss']:.3f}", g_loss=f"{scalars['g_loss']:.3f}"
                )
            if analysis_now:
                scalars |= analysis.log_scalars(d_raw, d_out["real"])
            run_log.log(step, scalars)
            if logging_now:
                # The console's record of progress, kept in the run's train.log by Hydra.
                log.info(
                    "step %d/%d: d_loss=%.4f g_loss=%.4f it/s=%.3g",
                    step, t.iterations, scalars["d_loss"], scalars["g_loss"], scalars["it_per_s"],
                )  # fmt: skip
                tick, tick_step = now, step
        if ctx.is_main and t.vis_freq and (step % t.vis_freq == 0 or step == t.iterations):
            grid = run_dir / "samples" / f"step_{step:07d}.png"
            _save_grid(g_raw, fixed_z, grid)
            run_log.log_image(step, "samples", grid)
        # Before the checkpoint: a kill during an evaluation resumes before it and redoes it.
        if evaluating_now:
            if evaluator is not None:
                evaluator(step, g_raw, run_log)
            # Rank 0 evaluates alone; the other ranks wait here. One evaluation must fit
            # in the process group's timeout (NCCL: 10 minutes by default).
            distributed.barrier(ctx)
        if saving_now and ctx.is_main:
            last_saved = save(step)
        if _stop_requested(stop, ctx):
            if ctx.is_main and not saving_now:
                if bad.item():  # never save a diverged state, even when asked to stop
                    raise NonFiniteLossError(
                        f"a loss became NaN/Inf after iteration {last_good}; stopping without "
                        f"saving; the last good checkpoint is {last_saved or 'none'}"
                    )
                last_saved = save(step)
            distributed.barrier(ctx)
            bar.close()
            if run_log is not None:
                run_log.close()
            log.info("stopped at iteration %d; %s", step, last_saved)
            stop.finish()
    bar.close()
    summary = {"step": t.iterations, "resumed_from": start, "run_dir": str(run_dir)}
    if run_log is not None:
        run_log.close()
    return summary
