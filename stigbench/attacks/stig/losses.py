"""The losses of STIG (Lee, Jung, Seo, AAAI 2024, arXiv 2403.05093), each a small module.

All losses compute in float32 whatever the autocast precision of the networks that fed them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stigbench.core import distributed
from stigbench.measures.fidelity import ssim


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype != torch.float32 else x


class LSGANLoss(nn.Module):
    """Least-squares GAN loss (Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017):
    ``mean((D(x) - t)^2)`` with target ``t = 1`` for real and ``0`` for fake.

    Used for both the spectrum PatchGAN (per-patch scores) and the profile discriminator; the
    discriminator's loss is the mean of its real and fake terms (the CUT convention, weight 1 overall).
    """

    def forward(self, pred: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        pred = _f32(pred)
        return ((pred - (1.0 if target_is_real else 0.0)) ** 2).mean()


class PatchNCELoss(nn.Module):
    """PatchNCE (Park et al., "Contrastive Learning for Unpaired Image-to-Image Translation", ECCV 2020).

    For ``P`` sampled locations of one image, the query ``q_i`` (the *output's* features at location
    ``i``) must pick out its key ``k_i`` (the *input's* features at the same location) among the keys of
    the other ``P - 1`` locations of the same image:
    ``L = mean_i -log( exp(q_i.k_i / tau) / sum_j exp(q_i.k_j / tau) )``.
    Negatives come from the same image only (CUT's default for single-image batches; other images of a
    batch would be easy negatives that say nothing about content preservation). Keys are detached: the
    input's features are the target, only the query side is trained.

    Inputs are the projected, L2-normalised patch features ``(B, P, D)``.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        query, key = _f32(query), _f32(key).detach()
        logits = torch.bmm(query, key.transpose(1, 2)) / self.temperature  # (B, P, P), positives on the diagonal
        target = torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)
        return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def sample_locations(h: int, w: int, n: int, generator: torch.Generator | None = None,
                     device: torch.device | None = None) -> torch.Tensor:
    """``min(n, h*w)`` distinct flat locations of an ``h x w`` map (shared by query and key)."""
    idx = torch.randperm(h * w, generator=generator)[: min(n, h * w)]
    return idx.to(device) if device is not None else idx


def gather_patches(feat: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """Features ``(B, C, H, W)`` at flat ``locations`` -> ``(B, P, C)``."""
    return feat.flatten(2)[:, :, locations].transpose(1, 2)


class SSIM(nn.Module):
    """Structural similarity (Wang et al., "Image Quality Assessment: From Error Visibility to Structural
    Similarity", IEEE TIP 2004) of images in ``[0, 1]``: Gaussian window (11 taps, sigma 1.5), per channel,
    ``SSIM = mean[(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))]`` with
    ``C1 = 0.01^2``, ``C2 = 0.03^2``, over the valid (unpadded) window positions.

    The STIG terms are ``1 - SSIM``: identity on reals (their refinement should be a no-op) and content on
    fakes.
    """

    def __init__(self, window: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.window, self.sigma = window, sigma

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # The same SSIM that scores an attack's cost (stigbench.measures.fidelity), in fp32 under autocast.
        return ssim(_f32(x), _f32(y), self.window, self.sigma).mean()


def lf_box_half(size: int, sigma_at_256: float = 8.0) -> int:
    """Half-side ``sigma`` of the low-frequency box: ``sigma_at_256`` at N = 256, scaled with N, >= 1."""
    return max(1, round(sigma_at_256 * size / 256))


class LowFrequencyLoss(nn.Module):
    """Low-frequency RMSE around DC (STIG): ``sqrt(mean_box (G(M) - M)^2 + eps)`` per image, averaged.

    The box is ``2 sigma x 2 sigma`` centred on DC of the shifted spectrum (rows and columns
    ``N/2 - sigma .. N/2 + sigma - 1``), with ``sigma = 8`` at N = 256 scaled with N. It keeps the refiner
    off the low frequencies (overall colour and layout) so that it only changes the mid and high ones.
    The epsilon sits inside the square root: the gradient of ``sqrt`` is infinite at 0, exactly where an
    identity-initialised generator starts, and would turn the first step into NaN.
    """

    def __init__(self, sigma_at_256: float = 8.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.sigma_at_256, self.eps = sigma_at_256, eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = _f32(output), _f32(target)
        h, w = output.shape[-2:]
        s = lf_box_half(min(h, w), self.sigma_at_256)
        box = (slice(None), slice(None), slice(h // 2 - s, h // 2 + s), slice(w // 2 - s, w // 2 + s))
        mse = ((output[box] - target[box]) ** 2).flatten(1).mean(1)
        return torch.sqrt(mse + self.eps).mean()


class MeanMatchingLoss(nn.Module):
    """Moves the refined fakes' *mean* spectrum onto the reals' and then stops: feature matching
    (Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016) on the normalised
    log-magnitude spectrum, with running means instead of one batch's.

    A discriminator's gradient does not vanish when the refined spectra reach the reals': a linear
    critic keeps its direction until it is retrained, so G overshoots (on held-out DDPM fakes the log
    frequency distance fell from 0.0147 to 0.0124 and rose to 0.0300 as training went on). Here the
    target is the gap itself. ``m_f`` and ``m_r`` are exponential moving averages (decay ``decay``) of
    the batch-mean spectra of the refined fakes and of the reals, and

        ``L = mean_{c,u,v} [ g * (mean_b d - sg(mean_b d)) ] + mean_{c,u,v} g^2 / 2``,   ``g = sg(m_f - m_r)``,

    whose value is half the mean squared gap and whose gradient moves every refined image by the same
    ``g / B``: the gap closes and the push vanishes with it. The batch mean squared (plain
    ``(mean_b d - m_r)^2``) would also shrink each image's deviation from the batch mean, i.e. make
    the refined spectra alike, which a detector sees; the stop-gradient form leaves the spread alone.

    With ``moments=2`` the second moments ``E[d^2]`` are matched the same way (moment matching; Li,
    Swersky, Zemel, "Generative Moment Matching Networks", ICML 2015, with a degree-2 polynomial
    kernel): detectors read *powers* (ring averages of ``|F|^2``, per-image normalisations), and a set
    whose mean log-magnitude matches the reals' but whose spread is wider has more power than theirs
    (``E[e^{2X}]`` grows with the variance of ``X``). The push on image ``i`` is then
    ``(g_1 + 2 g_2 d_i) / B``, which also pulls a too-wide spread in.
    """

    def __init__(self, shape: tuple[int, ...], decay: float = 0.95, moments: int = 1) -> None:
        super().__init__()
        if moments not in (1, 2):
            raise ValueError(f"moments must be 1 or 2, got {moments}")
        self.decay, self.moments = decay, moments
        # Buffers: saved in checkpoints, so a resumed run continues the same averages. One row per moment.
        self.register_buffer("fake_mean", torch.zeros(moments, *shape))
        self.register_buffer("real_mean", torch.zeros(moments, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        # Fixed standardisation of the inputs, (x - shift) / scale, for features that arrive unscaled.
        self.register_buffer("shift", torch.zeros(shape))
        self.register_buffer("scale", torch.ones(shape))

    def _stats(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.shift) / self.scale
        if distributed.active() is None:
            return torch.stack([x.mean(0), x.square().mean(0)][: self.moments])
        # Under torchrun each rank holds a slice of the batch: the moments are the whole batch's.
        sums = torch.stack([x.sum(0), x.square().sum(0)][: self.moments])
        count = distributed.all_reduce_sum(torch.tensor(float(len(x)), device=x.device))
        return distributed.all_reduce_sum(sums) / count

    @torch.no_grad()
    def _track(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        if int(self.count) == 0:  # start from the first batch, not from zeros
            self.fake_mean.copy_(fake)
            self.real_mean.copy_(real)
        else:
            self.fake_mean.lerp_(fake, 1 - self.decay)
            self.real_mean.lerp_(real, 1 - self.decay)
        self.count += 1

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``fake``: refined fakes' normalised spectra ``(B, C, H, W)`` (with gradient); ``real``: reals'."""
        batch = self._stats(_f32(fake))
        self._track(batch.detach(), self._stats(_f32(real).detach()))
        gap = self.fake_mean - self.real_mean
        return (gap * (batch - batch.detach())).sum(0).mean() + 0.5 * gap.square().sum(0).mean()
