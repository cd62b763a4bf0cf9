"""Kinds of objects a lab is built from, one module each (links: nsbox.kinds.links)."""
