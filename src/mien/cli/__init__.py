"""The ``mien`` command line."""
