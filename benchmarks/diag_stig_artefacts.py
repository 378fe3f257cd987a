"""Where does a trained STIG refiner write evidence of its own? One number per candidate artefact.

Given run folders (each with ``refiners/stig``), refines the run's test fakes and measures, on the
same images, each mechanism by which the refiner can add a trace that neither reals nor fakes have:

* ``asym``: share of G's change ``zh - z`` (normalised units) that is anti-symmetric, ``M(k) != M(-k)``;
  the real part of the inverse FFT throws that share away, so D and the image disagree about it;
* ``clamped %``: pixels the rebuild pushed out of ``[0, 1]`` (clamping them adds broadband energy);
* ``tail``: mean log power of the outer quarter of the rings (dzanic's fitting range), in four
  versions: fake, refined before the clamp, refined after the clamp, refined on the 8-bit grid; and
  the reals'. The 8-bit rounding of a changed image adds new quantisation noise on top of the fake's;
* ``axis``: mean excess of the log-magnitude on the two frequency axes over the rest of the same rings,
  refined minus real, against fake minus real (the border cross amplified by the per-frequency
  normalisation);
* ``square``: the refined-minus-fake change on the diagonals minus on the axes within rings 4..N/2
  (a change with square-ring symmetry is not isotropic);
* ``spike``: the largest ``|mean refined - mean real|`` of one frequency (channel mean, DC left out),
  against ``spike fake``, the same for the fakes: a narrow excess the refiner writes at a few bins
  (e.g. where G's zero padding meets the border of the spectrum array) shows here and nowhere else;
* ``pattern``: correlation over frequencies between the mean change refined - fake and the estimation
  noise of the reals' mean spectrum (training reals minus test reals): a change that copies the
  training reals' sample noise is a fixed pattern no test real has.

    python benchmarks/diag_stig_artefacts.py RUN_DIR [RUN_DIR ...] [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_section  # noqa: E402

from stigbench.attacks.registry import load_refiner  # noqa: E402
from stigbench.data.specs import load_dataset  # noqa: E402
from stigbench.core.io import read_json  # noqa: E402
from stigbench.core.config import RunConfig  # noqa: E402
from stigbench.pipeline.plan import resolve_spec  # noqa: E402
from stigbench.measures.spectrum import fft_shifted, from_log_magnitude, grey, mean_log_spectrum, mirror, radius_map  # noqa: E402
from stigbench.data.split import make_split  # noqa: E402


def _tail_power(images: torch.Tensor) -> float:
    """Mean log power of the outer quarter of the (circular) rings, grey images."""
    g = grey(images.double())
    n = g.shape[-1]
    r = radius_map(n, n, "circular")
    keep = (r >= 0.75 * (n // 2)) & (r <= n // 2)
    return float(torch.log(fft_shifted(g).abs().square()[:, keep] + 1e-12).mean())


def diagnose(run_dir: Path) -> dict[str, float]:
    cfg = read_json(run_dir / "config.json")["config"]
    spec = resolve_spec(RunConfig(dataset=cfg["dataset"]))
    data = load_dataset(spec, progress=False)
    split = make_split(data, seed=cfg["seed"])
    fakes = torch.cat(list(data.fake.subset(split.indices("fake", "test")).batches(256)))
    reals = torch.cat(list(data.real.subset(split.indices("real", "test")).batches(256)))
    train_reals = data.real.subset(split.indices("real", "train"))
    t = load_refiner(run_dir / "refiners" / "stig").translator_.cpu().float().eval()
    with torch.no_grad():
        lm, phase, smooth = t.analyse(fakes)
        z, stats = t.normalise(lm)
        zh = t.finish(t.generator(z).float())
        change = zh - z
        anti = 0.5 * (change - mirror(change))
        raw = from_log_magnitude(t.denormalise(zh, stats), phase)
        raw = raw if smooth is None else raw + smooth
    clamped = raw.clamp(0, 1)
    q = clamped.mul(255).round().div(255)
    m_real, m_fake, m_ref = (mean_log_spectrum([x]) for x in (reals, fakes, q))
    n = fakes.shape[-1]
    c = n // 2
    rc = radius_map(n, n, "circular")
    on_axis = torch.zeros(n, n, dtype=torch.bool)
    on_axis[c, :] = on_axis[:, c] = True
    band = (rc >= 4) & (rc <= c)

    def axis_excess(d: torch.Tensor) -> float:
        d = d.mean(0)
        return float(d[on_axis & band].mean() - d[~on_axis & band].mean())

    uu, vv = torch.meshgrid(torch.arange(n) - c, torch.arange(n) - c, indexing="ij")
    diag = (uu.abs() == vv.abs()) & band
    delta = (m_ref - m_fake).mean(0)
    noise = (mean_log_spectrum(train_reals.batches(256)) - m_real).mean(0)
    sel = band & ~on_axis
    corr = float(np.corrcoef(delta[sel].numpy(), noise[sel].numpy())[0, 1])
    def spike(d: torch.Tensor) -> float:
        d = d.mean(0).abs()
        d[c, c] = 0  # DC: the mean brightness, not a spectral shape
        return float(d.max())

    return {
        "asym": float(anti.square().sum() / change.square().sum().clamp_min(1e-12)),
        "clamped %": float(100 * ((raw < 0) | (raw > 1)).double().mean()),
        "tail fake": _tail_power(fakes), "tail float": _tail_power(raw), "tail clamp": _tail_power(clamped),
        "tail 8-bit": _tail_power(q), "tail real": _tail_power(reals),
        "axis fake-real": axis_excess(m_fake - m_real), "axis refined-real": axis_excess(m_ref - m_real),
        "square": float(delta[diag].mean() - delta[on_axis & band].mean()),
        "spike fake": spike(m_fake - m_real), "spike": spike(m_ref - m_real),
        "pattern": corr,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    rows = []
    for run in args.runs:
        cfg = read_json(run / "config.json")["config"]
        stig = cfg.get("refiner_params", {}).get("stig", {})
        rows.append((f"{cfg['dataset']} s{cfg['seed']} {stig or 'cpu'}", diagnose(run)))
    keys = list(rows[0][1])
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{v[k]:.3f}" for k in keys) + " |" for name, v in rows]
    text = "\n".join(lines)
    print(text)
    if args.write:
        append_section(f"diag_stig_artefacts{': ' + args.title if args.title else ''}",
                       "`python benchmarks/diag_stig_artefacts.py RUN...` (see its docstring for each column).\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
