"""How fast the ONNX export reads a window against its Keras original, on a real cached clip.

    python -m export.speed --model PATH.keras [--onnx PATH.onnx] [--cache FILE.h5] [--repeats N]

Both read the same 75-frame window (one GRID sentence: the cache's first validation clip of 75
frames, or its first clip of 75 frames) as the
runtime pays for it: from uint8 crops, normalisation included, in one call; the median of N calls
after one warm-up. The ONNX model defaults to the export beside the Keras one (PATH.onnx); give an
int8 or fp16 variant with --onnx. One JSON line; run it on a quiet machine. The streaming forms are
timed by python -m realtime.bench, which never loads TensorFlow.
"""

from __future__ import annotations

import json
import sys

from export import A_CACHE, CACHE, missing
from realtime.backend import model_path
from realtime.cli import Parser, at_least, named_path, summary
from realtime.exits import EXIT_OK, EXIT_USAGE
from realtime.files import run_command
from realtime.interrupts import interruptible


@interruptible
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m export.speed", description=summary(__doc__))
    parser.add_argument("--model", type=model_path, required=True,
                        help="a lipstream .keras model (a bare name such as lipstream-lite.keras names the bundled "
                             "one)")
    parser.add_argument("--onnx", type=model_path,
                        help="its export (default: the .onnx beside --model; a bare name such as "
                             "lipstream-lite.int8.onnx names a bundled variant)")
    parser.add_argument("--cache", type=named_path, default=CACHE, help="mouth-crop cache")
    parser.add_argument("--repeats", type=at_least(1), default=30, help="timed calls of each")
    args = parser.parse_args(argv)
    onnx_path = args.onnx or args.model.with_suffix(".onnx")
    if problem := missing(((args.model, "model"), (onnx_path, "ONNX model"), (args.cache, A_CACHE))):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if onnx_path.suffix == ".keras":  # the runtime's own hint would name its --model
        print(f"error: {onnx_path} is a Keras model: --onnx names its ONNX export", file=sys.stderr)
        return EXIT_USAGE

    from export.convert import weights_digest
    from realtime.backend import ModelLoadError, OnnxModel
    from realtime.bench import WINDOW, median_ms
    from realtime.spec import normalise
    from training.cache import check_crop, load_clips
    from training.split import split_of
    from training.model import inference_model, load

    try:
        keras_model, spec = load(args.model)
        onnx_model = OnnxModel(onnx_path, "cpu")
        check_crop(args.cache, spec.crop, args.model, "name a cache of its crop with --cache")
        # A held-out clip when there is one (a bad split.json: one line too), read alone: the whole cache is
        # a gigabyte for one window
        held_out = split_of(args.model, spec, "val", None).takes
        cached = [c for c in load_clips(args.cache, held_out) if len(c.mouth) >= WINDOW] or load_clips(args.cache)
    except (ValueError, OSError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    keras_model = inference_model(keras_model)
    # Timing another model's export against it would compare two models, not two runtimes.
    if onnx_model.export_id != weights_digest(keras_model):
        print(f"error: {onnx_path} was not exported from {args.model} (its metadata names other weights): name "
              "its export with --onnx", file=sys.stderr)
        return EXIT_USAGE
    clip = next((c for c in cached if len(c.mouth) >= WINDOW), None)
    if clip is None:
        print(f"error: {args.cache} has no clip of {WINDOW} frames", file=sys.stderr)
        return EXIT_USAGE
    window = clip.mouth[:WINDOW]
    # ONNX Runtime first: TensorFlow's thread pools, once they have run, would share the cores with it.
    ort_ms = median_ms(lambda: onnx_model.window_logp(window), args.repeats)
    tf_ms = median_ms(lambda: keras_model.predict_on_batch(normalise(window)[None]), args.repeats)
    print(json.dumps({"clip": clip.key, "frames": WINDOW, "tf_window_ms": tf_ms, "ort_window_ms": ort_ms,
                      "tf_over_ort": tf_ms / ort_ms}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
