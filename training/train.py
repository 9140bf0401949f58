"""Train a lipreading model on a mouth-crop cache.

    python -m training.train --cache FILE.h5 --out runs/NAME [--config lite] [--epochs N] [--resume]

The run folder keeps the clips it validates and trains on (split.json, which a resumed run and
training.evaluate go by), the last state (last.keras, state.json, resumable), the best model on
validation CER, ties broken by WER (best.keras, the inference model with its spec; with --ema, the
moving average of the weights), a CSV log (epochs counted from 1) and TensorBoard logs.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import math
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from realtime.backend import model_path
from realtime.cli import Parser, at_least, fraction, fraction_below_one, named_path, non_negative, positive, summary
from realtime.crop import is_number
from realtime.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import folder_problem, make_folder_for, run_command, stage_file, write_text
from realtime.interrupts import held_interrupts, kept_stop_requests, stops_like_ctrl_c
from realtime.vocab import Vocabulary
from training.augment import AugmentOptions
from training.dataset import MOST_BATCH, SHORTEST_STREAM_WINDOW, unwritable_texts
from training.records import fields_checked, is_count, read_json
from training.split import VAL_FRACTION

if TYPE_CHECKING:  # imported where used: TensorFlow must start after the devices are configured
    import keras
    import tensorflow as tf

    from realtime.crop import CropSpec
    from training.augment import CachedClip


FINETUNE_BN_MOMENTUM = 0.9
EPOCHS, PATIENCE = 60, 12
# What a run writes, beginning with args.json: a folder holding them and no state.json is a run stopped
# before its first checkpoint was whole (Ctrl-C, a full disk, a killed process), which the same command
# begins again. Hidden files (.DS_Store, a notebook's checkpoints) are no one's model.
BEGUN_RUN = ("args.json", "split.json", "log.csv", "tb", "best.keras", "last.keras")


@dataclass(frozen=True)
class TrainOptions:
    """A training run, as `python -m training.train` takes it (each field is the option of its name); its
    run folder's args.json records them."""

    cache: Path
    out: Path
    config: str = "lite"
    dropout: float | None = None  # None: the config's
    spatial_dropout: float | None = None
    epochs: int | None = None  # None: a resumed run's own, else EPOCHS
    resume: bool = False
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    ema: float = 0.0
    val_fraction: float = VAL_FRACTION
    aux_weight: float = 0.5
    speech_weight: float = 0.0
    confidence_penalty: float = 0.0
    sequence_weight: float = 0.0
    sequence_scale: float = 1.0
    char_weight: float = 0.5  # with char_target silence: the recipe's (training.recipe), measured best of those tried
    curriculum_epochs: int = 0
    stream_share: float = 0.35
    splice: float = 0.0
    augment: Literal["webcam", "lipnet"] = "webcam"
    colour_swap: float = AugmentOptions.colour_swap
    time_mask: int = AugmentOptions.time_mask
    max_window: int = 90
    char_target: Literal["spread", "silence"] = "silence"
    min_visible: float = AugmentOptions.min_visible
    patience: int | None = None  # None: a resumed run's own, else PATIENCE
    steps: int = 0
    limit: int = 0
    init: Path | None = None
    freeze_front_end: bool = False
    strategy: Literal["default", "mirrored"] = "default"
    logical_cpus: int = 2
    seed: int = 0


# The options a resumed run keeps as it began; the others name the command's inputs and devices, or may grow.
_RUN_OPTIONS = tuple(f.name for f in fields(TrainOptions)
                     if f.name not in ("cache", "out", "epochs", "patience", "resume", "strategy", "logical_cpus"))
_DEFAULTS = {f.name: f.default for f in fields(TrainOptions) if f.default is not MISSING}


def _configure_devices(strategy: str, logical_cpus: int) -> None:
    import tensorflow as tf

    if strategy == "mirrored" and not tf.config.list_physical_devices("GPU") and logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)


def training_strategy(name: str) -> tf.distribute.Strategy:
    """The devices a run trains on: "mirrored", every GPU (or logical CPU); "default", the first of them.
    One device is still an explicit strategy: under one, Keras makes the optimizer's and the loss
    trackers' variables before it traces the training step, which it otherwise traces twice. A run
    starts about 3 s sooner, though Keras draws a batch (and the pipeline prefetches a few) to build from."""
    import tensorflow as tf

    devices = [d.name for d in (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(devices[0])


def learning_rate(epoch: int, base: float, epochs: int, warmup: int = 1) -> float:
    """A warm-up of `warmup` epochs rising in equal steps (the first at base / (warmup + 1)), then cosine
    decay to 5% of the base rate, which the last epoch (`epochs` - 1, 0-based as Keras counts) reaches
    when the run is longer than its warm-up and one epoch."""
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    progress = (epoch - warmup) / max(1, epochs - warmup - 1)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def seed_random_layers(model: keras.Model, seed: int, epoch: int) -> None:
    """Start epoch `epoch`'s dropout masks from (seed, epoch) alone, as the sampler draws its samples:
    Keras keeps its random layers' state out of the checkpoint, so a resumed run would otherwise draw
    its first epoch's masks again and come out apart from the run that went on."""
    states = [v for v in model.variables if v.name == "seed_generator_state"]
    for state, start in zip(states, np.random.SeedSequence((seed, epoch)).generate_state(len(states))):
        state.assign([int(start), 0])


def initialise(model: keras.Model, base_path: Path, freeze_front_end: bool) -> None:
    """Copy a trained model's weights into a new training model, layer by layer name."""
    import keras

    from training.model import FRONT_END, load

    base, _ = load(base_path)
    names = {layer.name for layer in model.layers}
    for layer in base.layers:  # a training head the new model lacks (a last.keras's speech head) is left
        if layer.weights and layer.name in names:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    for layer in model.layers:  # the batch statistics must follow a new camera and face within a few steps
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, FINETUNE_BN_MOMENTUM)
    if freeze_front_end:
        for layer in model.layers:
            layer.trainable = False
            if layer.name == FRONT_END:
                break


def compile_model(model: keras.Model, vocabulary: Vocabulary, lr: float, aux_weight: float, char_weight: float,
                  weight_decay: float = 0.0, ema: float = 0.0, speech_weight: float = 0.0,
                  confidence_penalty: float = 0.0, sequence_weight: float = 0.0, sequence_scale: float = 1.0) -> None:
    """CTC on the character head plus the per-frame word, character and (for a model with a speech
    head) speech losses, the CTC loss less `confidence_penalty` times the output's entropy and plus
    `sequence_weight` times the sentence against its rivals (see training.losses; the batches must then
    carry the rivals: training.dataset.pad_batch).
    Weight decay is decoupled from the gradient (Keras applies it as AdamW does); `ema` > 0 keeps an
    exponential moving average of the weights with that momentum (see `averaged_weights`)."""
    import keras

    from realtime.grid import RIVALS
    from training.losses import CTCLoss, FrameLoss, SpeechLoss

    optimizer = keras.optimizers.Adam(lr, clipnorm=5.0, weight_decay=weight_decay or None,
                                      use_ema=ema > 0, ema_momentum=ema)
    ctc = CTCLoss(vocabulary.blank, confidence_penalty, sequence_weight, sequence_scale,
                  rivals=RIVALS if sequence_weight else 0)
    losses = {"ctc": ctc, "words": FrameLoss(), "chars": FrameLoss()}
    weights = {"ctc": 1.0, "words": aux_weight, "chars": char_weight}
    if "speech" in model.output_names:
        losses["speech"], weights["speech"] = SpeechLoss(), speech_weight
    # XLA off everywhere: TensorFlow's fused CTC kernel has none, and Keras' "auto" compiles on a single GPU.
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, jit_compile=False)


@contextmanager
def averaged_weights(model: keras.Model) -> Iterator[None]:
    """Put the optimizer's moving average of the weights into the model for a while (Polyak averaging:
    it evens out the step-to-step noise of what is validated and kept), then restore the weights
    training goes on from. Without `--ema` the model is left as it is."""
    optimizer = model.optimizer
    if not optimizer.use_ema:
        yield
        return
    pairs = list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))
    current = [np.array(variable) for variable, _ in pairs]
    try:
        for variable, average in pairs:
            variable.assign(average)
        yield
    finally:
        for (variable, _), value in zip(pairs, current):
            variable.assign(value)


def improves(cer: float, wer: float, state: dict) -> bool:
    """Whether an epoch beats the best so far: lower validation CER, ties broken by lower WER."""
    return state["best_cer"] is None or (cer, wer) < (state["best_cer"], state["best_wer"])


def stopped_early(state: dict, patience: int) -> bool:
    """Whether `patience` epochs have passed without a better one: from the run's state, so a resumed
    run stops as the uninterrupted one would have."""
    return "best_epoch" in state and state["epoch"] - state["best_epoch"] >= patience


@stops_like_ctrl_c
def main(argv: list[str] | None = None, to_continue: str = "run the same command with --resume",
         beside: Collection[str] = (), result: bool = True, prog: str = "python -m training.train") -> int:
    """`to_continue`: how the user continues an interrupted run (a calling tool resumes its own way);
    `beside`: the names of a calling tool's own files in the run folder; `result`: print the run's result
    on stdout (a calling tool prints its own); `prog`: the command a refused option is told of."""
    parser = Parser(prog=prog, description=summary(__doc__))
    parser.add_argument("--cache", type=named_path, required=True, help="mouth-crop cache (python -m training.prepare)")
    parser.add_argument("--out", type=named_path, required=True, help="run folder")
    parser.add_argument("--config", help="model configuration (python -m training.model lists them)")
    parser.add_argument("--dropout", type=fraction_below_one,
                        help="dropout after each recurrent layer (default: the config's)")
    parser.add_argument("--spatial-dropout", type=fraction_below_one,
                        help="channel dropout after each convolution block (default: the config's)")
    parser.add_argument("--epochs", type=at_least(1),
                        help=f"epochs in all (default: {EPOCHS}; with --resume, the run's own unless given)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last state")
    parser.add_argument("--batch-size", type=at_least(1, MOST_BATCH),
                        help=f"samples a step, up to {MOST_BATCH}")
    parser.add_argument("--lr", type=positive)
    parser.add_argument("--weight-decay", type=non_negative,
                        help="decoupled weight decay per unit learning rate (0: off)")
    parser.add_argument("--ema", type=fraction_below_one,
                        help="validate and keep the moving average of the weights, with this momentum per "
                             "step, e.g. 0.998 (0: off)")
    parser.add_argument("--val-fraction", type=fraction_below_one)
    parser.add_argument("--aux-weight", type=non_negative, help="per-frame word loss weight (0: off)")
    parser.add_argument("--speech-weight", type=non_negative,
                        help="weight of predicting the sound from the lips (0: off): training.speech")
    parser.add_argument("--confidence-penalty", type=non_negative,
                        help="weight of the CTC output's entropy per frame, subtracted from the loss (0: off; "
                             "measured worse when streamed: docs/experiments.md)")
    parser.add_argument("--sequence-weight", type=non_negative,
                        help="weight of each whole GRID sentence's cross-entropy against the 45 sentences one "
                             "word away, by CTC likelihood (0: off; training.losses.CTCLoss)")
    parser.add_argument("--sequence-scale", type=positive,
                        help="scale of the CTC log-likelihoods in that cross-entropy: below 1 demands a margin")
    parser.add_argument("--char-weight", type=non_negative,
                        help="per-frame character loss weight on the CTC head (0: off)")
    parser.add_argument("--curriculum-epochs", type=at_least(0),
                        help="epochs of mostly short samples first (measured slower than none: docs/training.md)")
    parser.add_argument("--stream-share", type=fraction,
                        help="share of windows cut across concatenated clips, after the curriculum")
    parser.add_argument("--splice", type=fraction,
                        help="share of whole-sentence samples spliced from the words of several clips (0: off)")
    parser.add_argument("--augment", choices=("webcam", "lipnet"),
                        help="lipnet: flip and frame jitter only, without speed, affine and colour jitter")
    parser.add_argument("--colour-swap", type=fraction,
                        help="share of samples with their colour channels permuted (0: off)")
    parser.add_argument("--time-mask", type=at_least(0),
                        help="time masking: per second, up to this many frames replaced by the mean frame")
    parser.add_argument("--max-window", type=at_least(SHORTEST_STREAM_WINDOW),
                        help=f"longest stream window, frames (the shortest is {SHORTEST_STREAM_WINDOW})")
    parser.add_argument("--char-target", choices=("spread", "silence"),
                        help="per-frame character target (training.augment.CachedClip.frame_chars)")
    parser.add_argument("--min-visible", type=fraction,
                        help="a word a window cuts counts in its text when this share of it is in the window")
    parser.add_argument("--patience", type=at_least(1),
                        help=f"early stopping on validation CER (default: {PATIENCE}; with --resume, the run's own "
                             "unless given)")
    parser.add_argument("--steps", type=at_least(0),
                        help="steps per epoch; 0, the default: one pass over the training clips")
    parser.add_argument("--limit", type=at_least(0), help="use only this many clips (quick runs)")
    parser.add_argument("--init", type=model_path,
                        help="start from this model's weights (fine-tuning; a bare name such as lipstream-lite.keras "
                             "names a bundled one)")
    parser.add_argument("--freeze-front-end", action="store_true", help="train only the recurrent back end")
    parser.add_argument("--strategy", choices=("default", "mirrored"))
    parser.add_argument("--logical-cpus", type=at_least(1), help="CPU devices for --strategy mirrored")
    parser.add_argument("--seed", type=at_least(0, 2**32 - 1))  # what TensorFlow and NumPy take
    parser.set_defaults(**_DEFAULTS)  # the options' one source: TrainOptions
    args = parser.parse_args(argv)
    for option, value in (("--colour-swap", args.colour_swap), ("--time-mask", args.time_mask)):
        if args.augment == "lipnet" and value:
            parser.error(f"{option} is part of the webcam augmentation, which --augment lipnet leaves out")
    if args.freeze_front_end and not args.init and not args.resume:  # a resumed run has its own --init
        parser.error("--freeze-front-end keeps the front end --init gives: pass --init MODEL")
    given = given_options(parser, argv)
    if "logical_cpus" in given and args.strategy != "mirrored":  # (a run's strategy is the command line's)
        parser.error("--logical-cpus splits the CPU for --strategy mirrored alone: pass both")
    if "sequence_scale" in given and not args.sequence_weight and not args.resume:  # (a resumed run's: args.json)
        parser.error("--sequence-scale scales the loss --sequence-weight turns on: give it a weight above 0")
    try:
        code = train(TrainOptions(**vars(args)), given, beside)
        if code == EXIT_OK and result:
            print_result(args.out)
        return code
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if (args.out / "state.json").exists():
            print(f"interrupted: {args.out} keeps every finished epoch; {to_continue} to continue", file=sys.stderr)
        elif (args.out / "args.json").exists():
            print("interrupted before an epoch finished: nothing to resume; run the command again to begin",
                  file=sys.stderr)
        else:
            print("interrupted: nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:  # the input pipeline's generator, freed while Python runs: TensorFlow warns when it is freed at exit
        gc.collect()


def read_state(path: Path) -> dict:
    """A resumed run's state.json, checked whole before anything is loaded: a value edited by hand would
    otherwise fail (or mislead) only where it is used, at the end of a whole resumed epoch."""
    what = "a training run's state"
    state = read_json(path, what, {"epoch": is_count, "best_cer": lambda v: v is None or is_number(v)})
    if state["best_cer"] is None:  # no epoch validated: none run, as each is validated as it ends
        if state["epoch"]:
            raise ValueError(f"{path} is not {what} ('best_cer' is null after epoch {state['epoch']})")
        return state
    return fields_checked(state, path, what, {"best_wer": is_number,
                                              "best_epoch": lambda v: is_count(v) and 1 <= v <= state["epoch"]})


def _same_option(given: object, recorded: object) -> bool:
    """Whether an option given to a resumed run is the value its args.json records: a model path is the
    same model however it is named."""
    if isinstance(given, Path) and isinstance(recorded, Path):
        return given.resolve() == recorded.resolve()
    return given == recorded


def _option_text(key: str, value: object, bare: bool = False) -> str:
    """An option as a command line gives it: `--name value` (`bare`: the value alone), a flag alone, or
    without it."""
    option = f"--{key.replace('_', '-')}"
    if isinstance(value, bool) or value is None:
        return option if value else f"without {option}"
    return str(value) if bare else f"{option} {value}"


def check_inputs(config: str, cache: Path) -> CropSpec:
    """The crop of an existing cache, for a known configuration; or a one-line error."""
    from training.model import CONFIGS

    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r} (choose from {', '.join(CONFIGS)})")
    from training.cache import read_crop_spec

    return read_crop_spec(cache)  # a missing cache, or one that is not, before the run folder is touched


def given_options(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The options the command line gives, whatever their value (its default's too): parsed again into a
    namespace holding a stand-in for each, which argparse leaves where an option is not given."""
    unset = object()
    names = [f.name for f in fields(TrainOptions)]
    probe = argparse.Namespace(**dict.fromkeys(names, unset))
    parser.parse_args(argv, probe)
    return {key for key in names if getattr(probe, key) is not unset}


def check_cached_texts(train_clips: list[CachedClip], val_clips: list[CachedClip], cache: Path) -> None:
    """Refuse clips whose text the model cannot write, naming them, and clips without a word to read: the
    input pipeline would fail on them minutes into the run, in TensorFlow's words."""
    vocabulary = Vocabulary()
    if bad := unwritable_texts(((c.key, c.text + "".join(c.words)) for c in (*train_clips, *val_clips)), vocabulary):
        raise ValueError(f"{cache}: the model cannot write the text of {bad} (it writes {vocabulary.charset!r}): "
                         "correct their align files and prepare the cache again")
    if not any(c.words for c in train_clips):
        raise ValueError(f"{cache}: none of the {len(train_clips)} training clips has a word to read (their align "
                         "files hold only silence)")


def train(options: TrainOptions, given: Collection[str] = (), beside: Collection[str] = ()) -> int:
    """Run or resume the training `options` ask for (a resumed run takes the default of an option its
    folder's args.json predates); `given`: the options the command line gives (a resumed run
    refuses one that is not the run's); `beside`: files a calling tool keeps in the run folder."""
    from training.cache import check_crop, check_fps, load_clips, read_fps
    from training.dataset import SampleMix, predict_clips, tf_dataset
    from training.split import SplitRecord, split
    from training.evaluate import error_rates
    from training.model import (CONFIGS, build, context_frames, count_params, forward, inference_model, load, read_spec,
                                stage)

    crop = check_inputs(options.config, options.cache)
    if options.init and not options.resume:  # a missing or foreign model is told before the run folder is made
        init_spec = read_spec(options.init)
        if init_spec.config and init_spec.config != options.config:
            raise ValueError(f"{options.init} is a {init_spec.config!r} model; pass --config {init_spec.config}")
        # Else its weights would start on pixels they never saw, or not fit at all.
        check_crop(options.cache, init_spec.crop, options.init, "prepare a cache with its crop")
        check_fps(options.cache, init_spec.fps, options.init)
    fps = read_fps(options.cache)  # before the run folder is touched, as the crop
    run = options.out
    state_path = run / "state.json"
    if problem := folder_problem(run, state_path):  # before the cache is loaded, not after
        raise NotADirectoryError(problem)
    if state_path.exists() and not options.resume:
        raise ValueError(f"{run} already holds a run: pass --resume to continue it, or choose another --out")
    if options.resume and not state_path.exists():
        raise ValueError(f"nothing to resume in {run}")
    if not options.resume and run.is_dir():  # a model or log of the user's is not written over
        begun = (run / "args.json").is_file()
        if foreign := sorted(p.name for p in run.iterdir() if not p.name.startswith(".") and p.name not in beside
                             and not (begun and (p.name in BEGUN_RUN or p.name.endswith((".tmp", ".tmp.keras"))))):
            raise ValueError(f"{run} holds files of no training run ({', '.join(foreign[:3])}"
                             f"{', …' if len(foreign) > 3 else ''}): choose another --out")
    recipe = run / "args.json"  # a resumed run trains on as it began
    recorded = options.resume and recipe.exists()
    began = read_json(recipe, "a training run's recipe") if recorded else {}
    fields_checked(began, recipe, "a training run's recipe",  # a value edited by hand is one line, not a traceback
                   {key: lambda v: is_count(v) and v > 0 for key in ("epochs", "patience") if key in began})
    # A resumed run may be given more.
    epochs: int = options.epochs or began.get("epochs") or EPOCHS
    patience: int = options.patience or began.get("patience") or PATIENCE
    options = replace(options, epochs=epochs, patience=patience)
    if recorded:
        kept = {}
        for key in _RUN_OPTIONS:  # an option given with another value than the run's would be ignored: refused
            value = began.get(key, _DEFAULTS[key])
            if key == "init" and value is not None:
                value = Path(value)
            if key in given and not _same_option(getattr(options, key), value):
                raise ValueError(f"{_option_text(key, getattr(options, key))} is not this run's "
                                 f"({_option_text(key, value, bare=True)}): a resumed run trains as it began; to "
                                 f"train otherwise, start another --out (--init {run / 'last.keras'} starts from its "
                                 "weights)")
            kept[key] = value
        options = replace(options, **kept)
    state: dict[str, Any] = read_state(state_path) if options.resume else {"epoch": 0, "best_cer": None}
    if options.resume:  # its weights read the crop it began with
        began_spec = read_spec(run / "last.keras")
        check_crop(options.cache, began_spec.crop, run, "resume on the cache the run began with")
        check_fps(options.cache, began_spec.fps, run)
    if state["epoch"] >= epochs:  # before anything is loaded: a finished run costs nothing to ask
        print(f"{run} already trained {state['epoch']} epoch{'' if state['epoch'] == 1 else 's'}", file=sys.stderr)
        return EXIT_OK
    if stopped_early(state, patience):
        print(f"{run} stopped early after epoch {state['epoch']}: no better validation reading since epoch "
              f"{state['best_epoch']}; a larger --patience goes on", file=sys.stderr)
        return EXIT_OK
    # Every refusal before the run folder is made: a refused run leaves nothing behind.
    clips = load_clips(options.cache)
    if options.resume:  # the clips it began with, and no others
        record = SplitRecord.read(run / "split.json")
        train_clips, val_clips = record.clips(clips, options.limit, options.cache)
    else:
        train_clips, val_clips = split(clips[:options.limit or None], options.val_fraction)
        if not train_clips:
            raise ValueError(f"no training clips: all {len(val_clips)} clips of {options.cache} are in the validation "
                             "split")
        if not val_clips:  # a few clips, or --val-fraction 0: checkpoints still need a reading to keep the best
            val_clips = train_clips[-1:]
            print(f"no clip falls in the validation split: validating on training clip {val_clips[0].key} "
                  "(its figures are not held out)", file=sys.stderr)
        record = SplitRecord(options.val_fraction, tuple(c.key for c in val_clips), tuple(c.key for c in train_clips))
    if options.speech_weight and all(c.speech is None for c in train_clips):
        raise ValueError(f"--speech-weight needs speech features in {options.cache}: its videos have no "
                         f"sound, or it was made before them (run training.prepare --out {options.cache} again)")
    check_cached_texts(train_clips, val_clips, options.cache)
    _configure_devices(options.strategy, options.logical_cpus)
    strategy = training_strategy(options.strategy)
    if options.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"--batch-size {options.batch_size} does not split evenly over the "
                         f"{strategy.num_replicas_in_sync} devices of --strategy {options.strategy}")
    make_folder_for(state_path)
    if not recorded:
        # Paths recorded whole: a resumed run compares its --init with the run's from any folder.
        write_text(recipe, json.dumps({k: str(v.resolve()) if isinstance(v, Path) else v
                                       for k, v in asdict(options).items()}, indent=1))
    elif (began.get("epochs"), began.get("patience")) != (epochs, patience):  # given more: the next resume too
        write_text(recipe, json.dumps({**began, "epochs": epochs, "patience": patience}, indent=1))
    if not options.resume:
        record.write(run / "split.json")

    import keras
    import tensorflow as tf

    from realtime.decode import greedy
    from realtime.spec import ModelSpec
    from training.augment import Sampler
    from training.speech import DIMS as SPEECH_DIMS

    keras.utils.set_random_seed(options.seed)
    vocabulary = Vocabulary()
    config = CONFIGS[options.config]
    if options.dropout is not None:
        config = replace(config, dropout=options.dropout)
    if options.spatial_dropout is not None:
        config = replace(config, spatial_dropout=options.spatial_dropout)
    base_spec = ModelSpec(vocabulary=vocabulary, fps=fps, crop=crop, context=context_frames(config),
                          config=config.name, version=_version(), validation=tuple(c.key for c in val_clips))
    print(f"{len(train_clips)} training clips, {len(val_clips)} validation clips", file=sys.stderr)
    print(f"{options.strategy} strategy: {strategy.num_replicas_in_sync} device(s)", file=sys.stderr)
    with strategy.scope():
        if options.resume:
            model, _ = load(run / "last.keras", compile=True)
        else:
            model = build(config, crop.height, crop.width, crop.channels, vocabulary,
                          speech_dims=SPEECH_DIMS if options.speech_weight else 0)
            if options.init:
                initialise(model, options.init, options.freeze_front_end)
            compile_model(model, vocabulary, options.lr, options.aux_weight, options.char_weight, options.weight_decay,
                          options.ema, options.speech_weight, options.confidence_penalty, options.sequence_weight,
                          options.sequence_scale)
    print(f"config {config.name}: {count_params(model):,} parameters", file=sys.stderr)

    steps = options.steps or max(1, len(train_clips) // options.batch_size)
    augment = AugmentOptions(min_visible=options.min_visible, char_target=options.char_target,
                             colour_swap=options.colour_swap, time_mask=options.time_mask, fps=base_spec.fps)
    if options.augment == "lipnet":
        augment = augment.lipnet_only()
    speech_dims = model.get_layer("speech").units if "speech" in model.output_names else 0  # as the run began
    sampler = Sampler(train_clips, augment, seed=options.seed, vocabulary=vocabulary, speech_dims=speech_dims)
    mix = SampleMix(options.curriculum_epochs, options.stream_share, (SHORTEST_STREAM_WINDOW, options.max_window),
                    options.splice)
    data = tf_dataset(sampler, options.batch_size, steps, state["epoch"], mix,
                      vocabulary, (crop.height, crop.width, crop.channels), with_rivals=options.sequence_weight > 0)
    runtime_model = inference_model(model)
    runtime_forward = forward(runtime_model)

    class Validate(keras.callbacks.Callback):
        """Greedy CER/WER on the validation clips (of the averaged weights with --ema); keeps the best
        model (lowest CER, then WER) and the resumable state (the raw weights)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            with ExitStack() as checkpoint:
                with averaged_weights(self.model):
                    logp = predict_clips(runtime_forward, val_clips)
                    hyps = [greedy(lp, vocabulary).text for lp in logp]
                    cer, wer = error_rates([c.text for c in val_clips], hyps)
                    checkpoint.enter_context(held_interrupts())  # best, last, state and log: all, or none
                    staged = {}  # written whole first: a failed write (a full disk) replaces none of them
                    checkpoint.callback(lambda: [tmp.unlink(missing_ok=True) for tmp in staged])
                    better = improves(cer, wer, state)
                    if better:
                        staged[stage(runtime_model, run / "best.keras",
                                     replace(base_spec, val_cer=cer, val_wer=wer))] = run / "best.keras"
                logs.update(val_cer=cer, val_wer=wer, epoch_seconds=time.perf_counter() - self.started)
                staged[stage(self.model, run / "last.keras", base_spec)] = run / "last.keras"
                epoch_state = {**state, "epoch": epoch + 1,
                               **(dict(best_cer=cer, best_wer=wer, best_epoch=epoch + 1) if better else {})}
                staged.update([stage_file(state_path, json.dumps(epoch_state, indent=1))])  # one at a time:
                log = run / "log.csv"  # each is cleaned up if a later one fails; `\n` line ends everywhere
                staged.update([stage_file(log, with_log_row(log, epoch + 1, logs), newline="")])
                for tmp, path in staged.items():  # renames in one folder: they do not fail for want of room
                    tmp.replace(path)
                state.update(epoch_state)
            print(f"\nepoch {epoch + 1}: val CER {cer:.4f} WER {wer:.4f} (best {state['best_cer']:.4f});"
                  f" e.g. {hyps[0]!r} for {val_clips[0].text!r}", file=sys.stderr)
            if stopped_early(state, patience):
                print(f"stopping early: no better validation reading in {patience} epochs", file=sys.stderr)
                self.model.stop_training = True

    if not options.resume:
        (run / "log.csv").unlink(missing_ok=True)  # a run that never finished an epoch left no state to resume
    with kept_stop_requests() as stopped:  # a Ctrl-C that Python dropped stops the run at the next step
        callbacks = [
            keras.callbacks.LambdaCallback(on_train_batch_end=lambda _, logs: stopped(),
                                           on_epoch_end=lambda _, logs: stopped()),
            # (it logs the rate)
            keras.callbacks.LearningRateScheduler(lambda e: learning_rate(e, options.lr, epochs)),
            keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: seed_random_layers(model, options.seed, e)),
            Validate(),
            keras.callbacks.TensorBoard(str(run / "tb"), write_graph=False, profile_batch=0),
        ]
        # With --ema, fit ends by writing the averages into the model: save nothing after it.
        # The dataset draws its own shuffled samples; fit's shuffle applies only to arrays.
        try:
            with redirect_stdout(sys.stderr):  # Keras' progress: stdout holds the run's result alone
                model.fit(data, epochs=epochs, initial_epoch=state["epoch"], steps_per_epoch=steps, shuffle=False,
                          callbacks=callbacks, verbose=1 if sys.stderr.isatty() else 2)
            stopped()  # one that came after the last step
        except tf.errors.OpError as e:  # a failed step: its finished epochs are kept, the traceback says no more
            print(f"error: training stopped in epoch {state['epoch'] + 1} ({run} keeps the epochs before it): "
                  f"{' '.join(e.message.split())}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK


def print_result(run: Path) -> None:
    """A run's result on stdout: its best model and what it read, as its state.json records them."""
    state = read_state(run / "state.json")
    print(f"best: {run / 'best.keras'} (epoch {state['best_epoch']} of {state['epoch']}, "
          f"val CER {state['best_cer']:.4f} WER {state['best_wer']:.4f})")


def with_log_row(path: Path, epoch: int, logs: dict[str, float]) -> str:
    """log.csv with an epoch's row added (`epoch` counted from 1, as state.json and the console count),
    written with its checkpoint so that neither an interrupt nor a full disk parts one from the other; the
    columns are the first row's (a resumed run logs what it began logging)."""
    with open(path, newline="", encoding="utf-8") if path.exists() else io.StringIO() as f:
        text = f.read()
    fields = next(csv.reader(io.StringIO(text)), None) or ["epoch", *sorted(logs)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    if not text:
        writer.writeheader()
    writer.writerow({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
    return text + out.getvalue()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lipstream")
    except PackageNotFoundError:
        return "0"


if __name__ == "__main__":
    sys.exit(run_command(main))
