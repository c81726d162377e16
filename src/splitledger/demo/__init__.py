"""The demo: a seeded marketplace and six weeks of simulated trading through the services."""

from splitledger.demo.simulation import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
