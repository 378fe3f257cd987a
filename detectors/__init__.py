"""Built-in detectors, installed as ``stigbench.detectors``: one module per detector, each registered
with ``@register_detector``. Modules are imported on first use of the detector registry."""
