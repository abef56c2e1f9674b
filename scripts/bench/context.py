"""What every phase of a benchmark run shares."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pyspark.sql import SparkSession

from .data import Frames
from .hook import TimingHook
from .memory import MemorySampler


@dataclass
class Setup:
    """The session, its cached inputs, the parsed flags, the memory sampler, the hook."""

    spark: SparkSession
    frames: Frames
    args: argparse.Namespace
    memory: MemorySampler
    hook: TimingHook
