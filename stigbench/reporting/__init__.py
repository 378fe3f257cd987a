"""The reports, in three rooms: one run's report (:mod:`stigbench.reporting.run`), the comparison across
runs (:mod:`stigbench.reporting.compare`) and what both render with (:mod:`stigbench.reporting.render`).
"""
