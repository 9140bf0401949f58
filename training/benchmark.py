"""Milliseconds per training step of each configuration, on real cached clips.

    python -m training.benchmark --cache FILE.h5 [--configs lite wide lipnet] [--batch-size 16] [--steps 20]

Each configuration is built and compiled as training.train builds and compiles it and trained by
`fit` on the same tf.data pipeline (augmented sentences, sub-sentences and stream windows, prepared
beside the steps). The first steps build the graph and are not counted; the median and 90th
percentile of the rest are printed, one JSON line a configuration. Run it on a quiet machine: steps
share the cores with anything else running.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from realtime.cli import Parser, at_least, named_path, summary
from realtime.crop import CropSpec
from realtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import run_command
from realtime.interrupts import stops_like_ctrl_c
from training.augment import CachedClip
from training.dataset import MOST_BATCH

WARMUP_STEPS = 3


def step_ms(config_name: str, clips: list[CachedClip], crop: CropSpec, batch_size: int, steps: int,
            seed: int = 0) -> list[float]:
    """Wall time of each counted training step (ms)."""
    import keras

    from realtime.vocab import Vocabulary
    from training.augment import AugmentOptions, Sampler
    from training.dataset import SampleMix, tf_dataset
    from training.model import CONFIGS, build
    from training.train import compile_model, training_strategy

    keras.utils.set_random_seed(seed)
    vocabulary = Vocabulary()
    with training_strategy("default").scope():
        model = build(CONFIGS[config_name], crop.height, crop.width, crop.channels, vocabulary)
        compile_model(model, vocabulary, lr=2e-3, aux_weight=0.5, char_weight=0.5)  # weights: no effect on time
    total = WARMUP_STEPS + steps
    sampler = Sampler(clips, AugmentOptions(char_target="silence"), seed=seed, vocabulary=vocabulary)
    data = tf_dataset(sampler, batch_size, total, 0, SampleMix(), vocabulary,
                      (crop.height, crop.width, crop.channels))
    times: list[float] = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(1000 * (time.perf_counter() - self.started))

    model.fit(data, epochs=1, steps_per_epoch=total, shuffle=False, callbacks=[StepTimer()], verbose=0)
    return times[WARMUP_STEPS:]


@stops_like_ctrl_c
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.benchmark", description=summary(__doc__))
    parser.add_argument("--cache", type=named_path, required=True)
    parser.add_argument("--configs", nargs="+", default=["lite", "wide", "lipnet"])
    parser.add_argument("--batch-size", type=at_least(1, MOST_BATCH), default=16,
                        help=f"samples a step, up to {MOST_BATCH}")
    parser.add_argument("--steps", type=at_least(1), default=20, help="steps counted per configuration")
    args = parser.parse_args(argv)
    try:  # TensorFlow loads, then the clips: seconds in which a Ctrl-C is as welcome as later
        from training.cache import load_clips
        from training.split import VAL_FRACTION, split
        from training.train import check_inputs

        crop = [check_inputs(name, args.cache) for name in args.configs][0]
        clips, _ = split(load_clips(args.cache), VAL_FRACTION)
        if not clips:
            raise ValueError(f"{args.cache} holds no training clips")
    except KeyboardInterrupt:
        print("interrupted: nothing was timed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyError, OSError) as e:
        print(f"error: {args.cache} is not a lipstream cache ({e})", file=sys.stderr)
        return EXIT_USAGE
    try:
        for name in args.configs:
            times = step_ms(name, clips, crop, args.batch_size, args.steps)
            print(json.dumps({"config": name, "batch_size": args.batch_size, "steps": len(times),
                              "median_ms": round(float(np.median(times)), 1),
                              "p90_ms": round(float(np.percentile(times, 90)), 1)}), flush=True)
    except KeyboardInterrupt:
        print("interrupted: the configurations timed so far are printed above", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
