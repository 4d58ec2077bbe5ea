"""Helpers shared by scripts/bench's parts."""

import os
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Cargo's output directory: CARGO_TARGET_DIR when set (relative to the workspace), else target/.
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"))


def log(msg):
    print(msg, flush=True)


def median_spread(xs):
    """Median, min and max of a list of figures (the table prints `median (min-max)`)."""
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": list(xs)}
