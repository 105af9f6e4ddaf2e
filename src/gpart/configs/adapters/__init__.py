"""One module per adapter; each defines its `AdapterConfig` subclass and registers it.

Modules whose name starts with ``_`` are helpers; every other module in this folder is
imported by `gpart.configs.registry` on first use, so a new adapter needs no edit here.
"""
