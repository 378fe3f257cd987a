"""Released detectors scored as published (issue #26): the issue's command on the default dataset, what
the plan's checks cost, and UnivFD's CLIP encoding.

    python benchmarks/bench_released.py [--dataset demo-gan] [--univfd] [--write]

No released file can be fetched here: the files are written in the authors' formats with random weights
(seeded), so the AUCs measure nothing about the detectors; what is measured is that the run scores the
files without training them (``trained_on``, ``epochs_run``), records their hashes, and what it costs.

1. ``bench.py run --dataset demo-gan --detectors wang2020,npr --set wang2020.backbone=resnet50
   --set wang2020.checkpoint=F1 --set npr.size=paper --set npr.checkpoint=F2`` (the default refiner
   ``stig`` included), as a ``RunConfig``: wall time, each detector's fit time, the ``trained_on`` marks
   and the hashes in ``config.json`` against ``sha256sum``.
2. The plan (``resolve``) with and without the checkpoints: hashing and strictly loading a 98 MB
   ResNet-50 file happens there, before any image is read.
3. With ``--univfd``: a random full-size ``ViT-L-14-quickgelu`` open_clip file (1.2 GB visual tower
   saved as safetensors), the plan's strict load, and the CLIP features of 32 demo-gan images at 64²
   (``small=pad``), then again from the feature cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import append_section

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from stigbench.core.config import RunConfig  # noqa: E402
from stigbench.core.io import ENV_CACHE  # noqa: E402
from stigbench.pipeline.plan import resolve  # noqa: E402
from stigbench.pipeline.runner import run_benchmark  # noqa: E402
from stigbench.reporting.render.markdown import to_markdown  # noqa: E402
from stigbench.reporting.run.metrics_csv import read_metrics  # noqa: E402


def random_releases(folder: Path) -> dict[str, Path]:
    """CNNDetection's and NPR's file layouts with seeded random weights (BatchNorm variances positive)."""
    from torchvision.models import resnet50

    from stigbench.detection.released import ReleasedNPR

    torch.manual_seed(0)
    out = {}
    for name, model in (("cnn", resnet50(weights=None, num_classes=1)), ("npr", ReleasedNPR())):
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_var.uniform_(0.5, 1.5)
                    m.running_mean.normal_(0, 0.1)
        state = model.state_dict()
        path = folder / ("blur_jpg_prob0.5.pth" if name == "cnn" else "NPR.pth")
        torch.save({"model": state, "total_steps": 0} if name == "cnn" else state, path)
        out[name] = path
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def issue_command(dataset: str, files: dict[str, Path], out: Path) -> tuple[str, dict]:
    params = {"wang2020": {"backbone": "resnet50", "checkpoint": str(files["cnn"])},
              "npr": {"size": "paper", "checkpoint": str(files["npr"])}}
    trained = {"wang2020": {"backbone": "resnet50", "pretrained": "none"}, "npr": {"size": "paper"}}
    base = dict(dataset=dataset, detectors="wang2020,npr", out=str(out), progress=False)
    resolve(RunConfig(**base, detector_params=params))  # warm the imports and the OS file cache
    _, plan_released = timed(resolve, RunConfig(**base, detector_params=params))
    _, plan_trained = timed(resolve, RunConfig(**base, detector_params=trained))
    result, seconds = timed(run_benchmark, RunConfig(**base, detector_params=params))
    run = result.run_dir
    record = json.loads((run / "run.json").read_text())
    saved = json.loads((run / "config.json").read_text())["config"]["file_hashes"]
    m = read_metrics(run / "metrics.csv")
    rows = []
    for det, key in (("wang2020", "cnn"), ("npr", "npr")):
        info = json.loads((run / "detectors" / det / "fit_info.json").read_text())
        d = m[(m.detector == det) & (m.metric == "auc")]
        auc = {c: float(g.value.mean()) for c, g in d.groupby("condition")}
        rows.append({"detector": det, "trained_on": str(m[m.detector == det].trained_on.iloc[0]),
                     "hash in config.json = sha256sum": saved[det]["checkpoint"] == sha256(files[key]),
                     "epochs_run": info["epochs_run"], "fit s": record["detectors"][det]["fit_seconds"],
                     "AUC fake (random weights)": round(auc.get("fake", float("nan")), 3),
                     "AUC refined:stig": round(auc.get("refined", float("nan")), 3),
                     "file MB": round(files[key].stat().st_size / 2**20, 1)})
    import pandas as pd

    body = (f"`bench.py run --dataset {dataset} --detectors wang2020,npr --set wang2020.backbone=resnet50 --set "
            "wang2020.checkpoint=F1 --set npr.size=paper --set npr.checkpoint=F2` (default refiner `stig`, files "
            f"in the released layouts with seeded random weights): **exit 0 in {seconds:.0f} s** with an empty "
            "stage cache for the detectors.\n\n" + to_markdown(pd.DataFrame(rows)) +
            f"\n\nThe plan (`resolve`, before any image is read): {plan_released:.2f} s with both checkpoints "
            f"(SHA-256 and a strict load of each file), {plan_trained:.2f} s for the same detectors trained by the "
            "run. The AUCs are those of random networks: they show the rows exist, not how the released detectors "
            "fare (no released file can be fetched here).\n")
    return body, {"run_dir": str(run)}


def univfd_section(dataset: str, folder: Path) -> str:
    import open_clip
    from safetensors.torch import save_file

    from stigbench.core.imageset import ArrayImageSet
    from stigbench.data.specs import datasets, load_dataset
    from stigbench.detection.registry import detectors

    model = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None)
    path = folder / "vit_l14_visual.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("visual.")}, str(path))
    del model
    det = detectors().get("univfd")(clip=str(path), device="cpu")
    _, load_s = timed(det.check_params)
    data = load_dataset(datasets().get(dataset), progress=False)
    images = ArrayImageSet(np.stack([data.fake[i].mul(255).round().byte().numpy() for i in range(32)]))
    # An empty feature cache of its own: "cold" must not find the features of an earlier run of this script.
    os.environ[ENV_CACHE] = str(folder / "cache")
    first, cold = timed(det.extract, images)
    second, warm = timed(det.extract, images)
    same = bool(np.array_equal(first, second))
    return (f"`univfd` with a random full-size `ViT-L-14-quickgelu` visual tower ({path.stat().st_size / 2**30:.2f} GB "
            f"safetensors): the plan's strict load {load_s:.1f} s (once per process); CLIP features of 32 "
            f"{dataset} images at {images.size}² (`small=pad`, 224² input): {cold:.1f} s ({cold / 32:.2f} s/image), "
            f"from the feature cache {warm:.2f} s (bit-identical: {same}).\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="demo-gan")
    parser.add_argument("--univfd", action="store_true", help="also time univfd with a random ViT-L/14 (1.2 GB file)")
    parser.add_argument("--write", action="store_true", help="append the results to RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stigbench-released-") as tmp:
        folder = Path(tmp)
        body, _ = issue_command(args.dataset, random_releases(folder), folder / "reports")
        if args.univfd:
            body += "\n" + univfd_section(args.dataset, folder)
    print(body)
    if args.write:
        print("appended to", append_section("Released detectors (bench_released.py)", body))


if __name__ == "__main__":
    main()
