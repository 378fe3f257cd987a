"""Built-in dataset specs (``*.toml``), installed as package data of ``stigbench.datasets``."""
