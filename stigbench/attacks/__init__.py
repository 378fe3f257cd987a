"""Built-in refiners (attacks). Each module registers itself with ``@register_refiner``."""
