"""The comparison across run folders (``bench.py report``): collecting and grouping the runs, the
aggregate over seeds, the leaderboard, the train × test matrix, tables, figures and the Markdown and
HTML pages (:func:`stigbench.reporting.compare.comparison.compare_runs`)."""
