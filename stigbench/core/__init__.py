"""The bottom layer: the component contracts, the generic registry, image sets, estimator persistence,
file I/O, devices and provenance. Imports nothing else from stigbench.
"""
