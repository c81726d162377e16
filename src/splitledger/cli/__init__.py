"""The ``splitledger`` command line (Typer)."""
