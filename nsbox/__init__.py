"""nsbox: container networking rebuilt from Linux primitives, proven with real traffic."""

__version__ = "0.1.0"
