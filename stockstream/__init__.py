"""stockstream: one real-time, trustworthy available-to-sell number across marketplaces, warehouses and ERPs."""

__version__ = "0.1.0"
