"""ptune-cli: p-tuning for languages that lack labeled data."""

__version__ = "0.1.0"
