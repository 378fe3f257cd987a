"""The notes under a comparison's tables and figures, shared by ``comparison.md``, ``comparison.html``
and the captions of its LaTeX tables."""

from __future__ import annotations

from stigbench.reporting.compare.tables import ARROW, OVER_MARK


#: The seed of a run draws its split too: what a spread over seeds measures.
SEED_NOTE = ("Each seed also redraws the train/val/test split, so the spread over seeds includes the variance "
             "of the split (which images are trained on and scored), not only that of training.")
CELL_NOTE = ("Cells: mean ± sample standard deviation (ddof = 1) over the seeds of a dataset group (runs: n); "
             "a group of one run shows its value with the 95 % bootstrap interval on the test split in brackets. "
             f"{SEED_NOTE} {OVER_MARK} over-correction: AUC below 0.5 after refinement.")
MOVES_NOTE = ("Per group and refiner, how many detectors (trained on the fakes, clean test images) the refined "
              "fakes moved toward, away from (attack adds evidence) or past chance, or left unchanged, judged on "
              "each run's 95 % AUC intervals, or that the attack did nothing (attack inactive: named under Warnings) "
              "(definitions: stigbench/evaluation/evidence.py); mean ± sample standard "
              f"deviation (ddof = 1) over the group's runs (data: moves.csv). {SEED_NOTE}")
BOARD_NOTE = ("Mean AUC over the datasets (each first averaged over its seeds) of detectors trained on the fakes, "
              "clean test images; brackets: 95 % percentile bootstrap interval over datasets. Ranked by the lowest "
              "mean AUC after any attack (most robust first). A dataset where an attack did nothing (attack "
              "inactive) is left out of its mean and the rank. Data: leaderboard.csv.")
DETAIL_NOTE = ("Per attack: mean AUC after it, ΔAUC (after − fake) and |AUC − 0.5| (0: at chance; pushed below "
               "0.5 counts as far from chance) over datasets, with bootstrap intervals over datasets; counts of "
               "datasets where the refined AUC's 95 % interval contains 0.5 (at chance) and where the attack moved "
               "the detector toward, away from (attack adds evidence) or past chance (stigbench/evaluation/"
               "evidence.py). A dataset with several seeds counts as the fraction of its runs in a class.")
ATTACKS_NOTE = ("Per attack, over datasets: evasion = mean over detectors of |AUC − 0.5| on real vs refined (lower = "
                "a better attack), against its quality cost (LFD/FID to the reals: lower = closer; PSNR to the "
                "original fakes: higher = a smaller change); brackets: 95 % bootstrap interval over datasets. "
                "Data: attacks.csv.")
HEATMAP_NOTE = ("Detectors trained on the fakes, clean test images; mean over seeds; the last column is the mean "
                "over datasets. ΔAUC = AUC after the attack − AUC on the fakes.")
PAPER_NOTE = (f"Cells: AUC on the unrefined fakes {ARROW} after the refiner, mean over seeds (detectors trained on "
              f"the fakes, clean test images); mean: over the datasets with both; {OVER_MARK}: below 0.5 after it.")


__all__ = [
    "ATTACKS_NOTE", "BOARD_NOTE", "CELL_NOTE", "DETAIL_NOTE", "HEATMAP_NOTE", "MOVES_NOTE", "PAPER_NOTE",
    "SEED_NOTE"
]
