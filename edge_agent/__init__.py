"""Store-edge agent: the daemon on a retail store's mini-PC."""

__version__ = "0.1.0"
