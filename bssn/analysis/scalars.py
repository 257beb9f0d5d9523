"""Everything the analysis logs about D at one step, as flat scalars for the run log."""

from __future__ import annotations

import warnings

from torch import Tensor, nn

import bssn

from . import measure, theory

#: Samples of the real batch whose per-sample gradients Prop. 1 is checked on.
N_PROBE = 8


def log_scalars(d: nn.Module, x: Tensor, n_probe: int = N_PROBE) -> dict[str, float]:
    """The analysis scalars of D on the first ``n_probe`` samples of ``x``.

    Per conv/linear layer ``<l>``, all of the effective (forward) weight:

    - ``spectral_norm/<l>``: sigma(W1), exact; ``operator_norm/<l>``: the layer's norm as
      a map of its input (sigma(T_w) for convs, by warm-started power iteration);
    - ``sigma_ratio/<l>`` (convs): sigma(T_w)/sigma(W1), at most ``sigma_ratio_bound/<l>``,
      Sec. 4's alpha, and at least 1 when some output position's window lies wholly
      inside the input, as in the paper's models at their resolutions (Figs. 20/21);
    - ``variance/<l>``: the entries' variance (Figs. 7, 16, 17, 22); for normalized layers
      ``variance_bound_thm2/<l>`` = t^2 / max(m, n) and, for convs,
      ``variance_bound_thm3/<l>`` (docs/normalization.md, fact 6) times t^2, t the layer's target
      spectral norm (its scale, times gamma in the gamma modes);
    - ``prop1_grad/<l>``: mean over the probe samples of ||dD(x_j)/dw'_t||_F, and
      ``prop1_bound/<l>``: the mean of its Prop. 1 bound (``theory.prop1_bounds``; exact,
      with biases and alpha) (Figs. 2, 3, 12, 13); ``prop1_input_norm``: the mean ||x_j||,
      the paper's bound when every layer has norm 1. Logged only when D is a chain of
      conv/linear layers and leaky ReLUs (slope ``d.negative_slope``); otherwise a warning
      says why not.

    Cost: per layer one small symmetric eigenproblem and, per conv, 10 power-iteration
    steps (50 on the first call); one forward of the probe batch and one forward and
    backward per probe sample. For the CIFAR10 CNN on one CPU thread a call took 0.4 s,
    a sixth of one training iteration (batch 64), once per ``train.analysis_freq`` iterations.
    """
    d = bssn.unwrap(d)
    x = x[:n_probe].detach()
    calls = measure.trace(d, x)
    normalized = {name: normalizer.scale for name, _, normalizer in bssn.normalized_layers(d)}
    gammas = {name: v.get("gamma", 1.0) for name, v in bssn.sigmas(d).items()}
    out: dict[str, float] = {}
    operator_norms = []
    for call in calls:
        weight, name = measure.effective_weight(call.layer), call.name
        spectral, operator = measure.spectral_norm(weight), measure.operator_norm(call)
        operator_norms.append(operator)
        out[f"spectral_norm/{name}"] = spectral
        out[f"operator_norm/{name}"] = operator
        out[f"variance/{name}"] = measure.variance(weight)
        if call.is_conv:
            out[f"sigma_ratio/{name}"] = operator / spectral
            out[f"sigma_ratio_bound/{name}"] = call.alpha
        if name in normalized:
            target_sq = (normalized[name] * gammas[name]) ** 2
            out[f"variance_bound_thm2/{name}"] = target_sq * theory.thm2_bound(
                *weight.flatten(1).shape
            )
            if call.is_conv:
                out[f"variance_bound_thm3/{name}"] = target_sq * theory.thm3_bound(*weight.shape)

    reason = measure.chain_violation(calls, x, d.negative_slope)
    if reason is not None:
        warnings.warn(f"Prop. 1 scalars not logged: {reason}", stacklevel=2)
        return out
    grads = measure.sample_gradient_norms(d, x, [c.layer for c in calls])
    bias_norms = [measure.bias_norm(c) for c in calls]
    alphas = [c.alpha for c in calls]
    bounds = [
        theory.prop1_bounds(x_j.double().norm().item(), operator_norms, bias_norms, alphas)
        for x_j in x
    ]
    for t, call in enumerate(calls):
        out[f"prop1_grad/{call.name}"] = grads[:, t].mean().item()
        out[f"prop1_bound/{call.name}"] = sum(b[t] for b in bounds) / len(bounds)
    out["prop1_input_norm"] = x.flatten(1).double().norm(dim=1).mean().item()
    return out
