"""Calibration of the ``demo-gan`` and ``demo-diffusion`` datasets against the regime of real generators.

    python benchmarks/bench_demo_families.py            # print the tables
    python benchmarks/bench_demo_families.py --write    # and append a dated section to RESULTS.md
    python benchmarks/bench_demo_families.py --root DIR # measure the builds in DIR/<family> (built if missing)

Builds both families from scratch (timed) in a temporary folder with the spec's defaults, then, on the
spec's split (seed 0), measures what the calibration targets name:

* **LFD** (:func:`stigbench.measures.spectrum.lfd` of dataset-mean log spectra) between the test reals and the
  test fakes, between the whole sets, and the noise floor: validation reals vs test reals;
* **detector AUC** on test reals vs test fakes, each detector fitted on the training part (the
  benchmark's own protocol without a refiner), and the same on reals vs the fakes' *unprocessed*
  source pictures (an ad-hoc dataset of ``real/`` and ``sources/``), which should be near chance;
* **replicas** (``demo-gan``): the energy of each image's noise residual (image minus its 3x3 box blur)
  at the replica frequencies of two stride-2 stages, i.e. the variance of its 4x4-periodic mean pattern,
  relative to the residual's energy; reported as the fraction of test fakes above the 95th percentile
  of the test reals, and the median of each;
* **FID** (TF-Inception, :mod:`stigbench.evaluation.quality`) of the test fakes to the test reals, next to FID of
  as many training reals to the test reals.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import append_section

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm backbones: never download

from stigbench.measures import metrics as M  # noqa: E402
from stigbench.data.specs import Dataset, adhoc_spec, datasets, load_dataset  # noqa: E402
from stigbench.data.demo_families import build_demo_diffusion, build_demo_gan  # noqa: E402
from stigbench.core.imageset import ImageSet, labelled, set_progress  # noqa: E402
from stigbench.detection.registry import detectors  # noqa: E402
from stigbench.evaluation.quality import get_extractor  # noqa: E402
from stigbench.evaluation.quality_rows import quality_metrics  # noqa: E402
from stigbench.pipeline.plan import construct  # noqa: E402
from stigbench.measures.spectrum import lfd, mean_log_spectrum  # noqa: E402
from stigbench.data.split import Split, make_split  # noqa: E402

FAMILIES = {"demo-gan": build_demo_gan, "demo-diffusion": build_demo_diffusion}
DETECTORS = ["durall", "dzanic", "frank-dct", "peaks", "spectrum-cnn"]


def part(ds: Dataset, split: Split, label: str, name: str) -> ImageSet:
    return (ds.real if label == "real" else ds.fake).subset(split.indices(label, name))


def detector_aucs(ds: Dataset, names: list[str], seed: int) -> dict[str, float]:
    """Each detector fitted on the training part (validation part for early stopping), AUC on the test part."""
    split = make_split(ds, seed=seed)
    train, val, test = (labelled(part(ds, split, "real", p), part(ds, split, "fake", p)) for p in ("train", "val", "test"))
    out = {}
    for name in names:
        det = construct(detectors().get(name), {}, seed=seed, device="cpu")
        det.fit(train[0], train[1], val[0], val[1])
        out[name] = M.auc(test[1], det.score(test[0]))
    return out


def periodic_energy(images: ImageSet, period: int = 4) -> np.ndarray:
    """Per image: energy of the residual's ``period``-periodic mean pattern over the residual's energy.

    The mean over each of the ``period x period`` pixel phases keeps exactly the residual's Fourier
    components on the ``N/period`` grid (the up-sampling replicas); averaging ``(N/period)^2`` pixels
    per phase makes it a low-noise per-image statistic, unlike single-image spectral peaks.
    """
    out = []
    for x in images.batches(64):
        blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 1)
        r = (x - blur).double()
        n, c, h, w = r.shape
        phases = r.reshape(n, c, h // period, period, w // period, period).mean(dim=(2, 4))
        phases = phases - phases.mean(dim=(2, 3), keepdim=True)  # DC is not a replica
        out.append((phases.pow(2).mean(dim=(1, 2, 3)) / r.pow(2).mean(dim=(1, 2, 3))).numpy())
    return np.concatenate(out)


def spectra_lfd(a: ImageSet, b: ImageSet) -> float:
    return lfd(mean_log_spectrum(a.batches(64)), mean_log_spectrum(b.batches(64)))


def measure(name: str, root: Path, seed: int, fid: bool) -> dict[str, Any]:
    spec = dataclasses.replace(datasets().get(name), root=str(root))  # the build already there is reused
    ds = load_dataset(spec, progress=False)
    split = make_split(ds, seed=seed)
    real_test, real_val, real_train = (part(ds, split, "real", p) for p in ("test", "val", "train"))
    fake_test = part(ds, split, "fake", "test")
    row: dict[str, Any] = {
        "lfd_test": spectra_lfd(real_test, fake_test), "lfd_all": spectra_lfd(ds.real, ds.fake),
        "lfd_floor": spectra_lfd(real_val, real_test), "n_test": (len(real_test), len(fake_test)),
        "auc_fake": detector_aucs(ds, DETECTORS, seed),
    }
    e_real, e_fake = periodic_energy(real_test), periodic_energy(fake_test)
    row["replicas"] = {"above_p95": float((e_fake > np.percentile(e_real, 95)).mean()),
                       "median_real": float(np.median(e_real)), "median_fake": float(np.median(e_fake))}
    sources = load_dataset(adhoc_spec(root / "real", root / "sources", group_pattern=spec.group_pattern), progress=False)
    row["auc_sources"] = detector_aucs(sources, DETECTORS, seed)
    if fid:
        n = min(len(fake_test), len(real_train), len(real_val))
        # Evenly spaced reals, so the reference FIDs use as many images as the fakes' FID (FID is biased
        # upwards at small n, and by how much depends on n).
        def evenly(images: ImageSet) -> ImageSet:
            return images.subset(np.linspace(0, len(images) - 1, n).round().astype(int))

        q = quality_metrics(real_test, {"fake": evenly(fake_test), "train_reals": evenly(real_train),
                                        "val_reals": evenly(real_val)}, extractor=get_extractor(device="cpu"),
                            domains=("image",), max_images=None, cache=False, kid_subset_size=n)
        row["fid"] = {r["condition_key"]: r["value"] for r in q.rows if r["metric"] == "fid"}
        row["fid_n"] = n
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="build and split seed")
    ap.add_argument("--no-fid", action="store_true", help="skip the (slow, ~7 img/s on 2 cores) FID")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--note", default="", help="free text for the results section (e.g. 'shared CPU')")
    ap.add_argument("--write", action="store_true", help="append a dated section to benchmarks/RESULTS.md")
    ap.add_argument("--root", type=Path, help="build into (or reuse the builds in) DIR/<family> instead of a "
                    "temporary folder, e.g. those bench_demo_isa.py --keep DIR left")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_progress(False)

    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="stigbench-families-") as tmp:
        parent = args.root or Path(tmp)
        for name, build in FAMILIES.items():
            t0 = time.perf_counter()
            manifest = build(parent / name, seed=args.seed, progress=False)
            rows[name] = {"build_s": time.perf_counter() - t0, "timings": manifest["timings_s"],
                          "sha256": manifest.get("images_sha256", {}),
                          **measure(name, parent / name, args.seed, not args.no_fid)}
            print(name, rows[name], flush=True)

    names = list(rows)
    head = "| | " + " | ".join(names) + " |\n| --- |" + " ---: |" * len(names)
    lines = [head,
             "| build from scratch (the manifest's timings), s (pictures / generator / write) | " + " | ".join(
                 f"{r['timings']['total']:.1f} ({r['timings']['pictures']:.0f} / {r['timings']['generator']:.0f} / "
                 f"{r['timings']['write']:.0f})" for r in rows.values()) + " |",
             "| SHA-256 of the images (real / sources / fake), first 12 digits | " + " | ".join(
                 " / ".join(f"`{r['sha256'].get(k, '')[:12]}`" for k in ("real", "sources", "fake")) for r in rows.values()) + " |",
             "| test reals / test fakes | " + " | ".join(f"{a} / {b}" for a, b in (r["n_test"] for r in rows.values())) + " |",
             "| LFD test reals vs test fakes | " + " | ".join(f"{r['lfd_test']:.4f}" for r in rows.values()) + " |",
             "| LFD all reals vs all fakes | " + " | ".join(f"{r['lfd_all']:.4f}" for r in rows.values()) + " |",
             "| LFD noise floor (val reals vs test reals) | " + " | ".join(f"{r['lfd_floor']:.4f}" for r in rows.values()) + " |"]
    lines.append("| replica energy of the residual, median test real / test fake | " + " | ".join(
        f"{r['replicas']['median_real']:.4f} / {r['replicas']['median_fake']:.4f}" for r in rows.values()) + " |")
    lines.append("| test fakes above the test reals' 95th percentile of replica energy | " + " | ".join(
        f"{r['replicas']['above_p95']:.0%}" for r in rows.values()) + " |")
    for key, what in (("auc_fake", "real vs fake"), ("auc_sources", "real vs sources")):
        for det in DETECTORS:
            lines.append(f"| AUC {det}, {what} | " + " | ".join(f"{r[key][det]:.3f}" for r in rows.values()) + " |")
    if not args.no_fid:
        lines.append("| FID test reals vs test fakes | " + " | ".join(f"{r['fid']['fake']:.1f}" for r in rows.values()) + " |")
        lines.append("| FID test reals vs training reals (same n) | " + " | ".join(
            f"{r['fid']['train_reals']:.1f} (n={r['fid_n']})" for r in rows.values()) + " |")
        lines.append("| FID test reals vs validation reals (same n) | " + " | ".join(
            f"{r['fid']['val_reals']:.1f}" for r in rows.values()) + " |")
    table = "\n".join(lines)
    print()
    print(table)
    if args.write:
        note = f"{args.note}. " if args.note else ""
        body = (f"{note}Seed {args.seed}, 64², 480 + 480 images, the specs' split; detectors fitted on the train part, "
                f"AUC on the test part; FID with the TF-Inception network.\n\n{table}")
        print(f"\nappended to {append_section('bench_demo_families: demo-gan and demo-diffusion calibration', body)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
