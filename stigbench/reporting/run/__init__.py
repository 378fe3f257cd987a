"""One run's report, derived from the files the run wrote to its folder: its tables (detection,
quality, attacks, cross-dataset, ROC), its figures, ``summary.md`` and ``report.html``
(:func:`stigbench.reporting.run.report.write_run_report`)."""
