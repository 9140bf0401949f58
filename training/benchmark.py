"""Milliseconds per training step of each configuration, on real cached clips.

    python -m training.benchmark --cache FILE.h5 [--configs lite wide lipnet] [--batch-size 16] [--steps 20]

Each configuration is built and compiled as training.train builds and compiles it, then trained on
batches drawn as training draws them (augmented sentences, sub-sentences and stream windows). The
first steps build the graph and are not counted; the median of the rest is printed, one JSON line a
configuration. Run it on a quiet machine: steps share the cores with anything else running.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

WARMUP_STEPS = 3


def step_ms(config_name: str, cache: Path, batch_size: int, steps: int, seed: int = 0) -> list[float]:
    """Wall time of each counted training step (ms)."""
    import keras

    from realtime.vocab import Vocabulary
    from training.augment import Sampler
    from training.dataset import VAL_FRACTION, SampleMix, batches, load_clips, read_crop_spec, split
    from training.model import CONFIGS, build
    from training.train import compile_model

    keras.utils.set_random_seed(seed)
    vocabulary, crop = Vocabulary(), read_crop_spec(cache)
    train_clips, _ = split(load_clips(cache), VAL_FRACTION)
    model = build(CONFIGS[config_name], crop.height, crop.width, crop.channels, vocabulary)
    compile_model(model, vocabulary, lr=2e-3, aux_weight=0.5, char_weight=0.5)
    sampler = Sampler(train_clips, seed=seed, vocabulary=vocabulary)
    times = []
    for x, y in batches(sampler, batch_size, WARMUP_STEPS + steps, epoch=0, mix=SampleMix(), vocabulary=vocabulary):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(1000 * (time.perf_counter() - started))
    return times[WARMUP_STEPS:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--configs", nargs="+", default=["lite", "wide", "lipnet"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="steps counted per configuration")
    args = parser.parse_args(argv)
    from training.model import CONFIGS

    unknown = [name for name in args.configs if name not in CONFIGS]
    if unknown:
        print(f"error: unknown config {unknown[0]!r} (choose from {', '.join(CONFIGS)})", file=sys.stderr)
        return 2
    if not args.cache.is_file():
        print(f"error: no cache at {args.cache}: make one with python -m training.prepare", file=sys.stderr)
        return 2
    for name in args.configs:
        times = step_ms(name, args.cache, args.batch_size, args.steps)
        print(json.dumps({"config": name, "batch_size": args.batch_size, "steps": len(times),
                          "median_ms": round(float(np.median(times)), 1),
                          "p90_ms": round(float(np.percentile(times, 90)), 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
