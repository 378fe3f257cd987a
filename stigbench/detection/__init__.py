"""Detectors' building blocks: the registry and its decorator, the feature-detector and CNN base
classes. The built-in detectors themselves are plug-ins in ``stigbench.detectors``.
"""
