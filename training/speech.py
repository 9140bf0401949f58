"""What was heard at each video frame: log-mel features of a clip's sound, a training target only.

Asking the model to predict the sound from the lips (LiRA, Ma et al. 2021, pretrains on it) is a
target for every frame, silence included, that changes within a word where word and character labels
do not. `training.train --speech-weight` adds it: a head on the recurrent features that inference
drops, so the live model never hears anything.

Per video frame, SUBFRAMES log-mel vectors of MEL_BANDS bands (10 ms apart at 25 fps), standardised per clip
and band (the level of a microphone is not speech). training.prepare stores them as `speech`
(T, SUBFRAMES * MEL_BANDS) float16 beside each clip's `mouth`.
"""

from __future__ import annotations

import numpy as np

from realtime.audio import RATE

WINDOW = 400  # 25 ms
N_FFT = 512
MEL_BANDS = 40
SUBFRAMES = 4  # log-mel vectors per video frame: 10 ms apart at 25 fps
DIMS = SUBFRAMES * MEL_BANDS
FORMAT = {"rate": RATE, "window": WINDOW, "n_fft": N_FFT, "mel_bands": MEL_BANDS, "subframes": SUBFRAMES}


def mel_filters(bands: int = MEL_BANDS, n_fft: int = N_FFT, rate: int = RATE) -> np.ndarray:
    """Triangular mel filterbank (HTK mel scale), (bands, n_fft // 2 + 1)."""
    def mel(hz: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def hz(m: np.ndarray | float) -> np.ndarray:
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(0.0), mel(rate / 2), bands + 2))
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    rise = (bins[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    fall = (edges[2:, None] - bins[None, :]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0.0, np.minimum(rise, fall))


def speech_features(sound: np.ndarray, fps: float, frames: int, first_frame: int = 0) -> np.ndarray | None:
    """(frames, DIMS) float32: the log-mel features of video frames first_frame .. first_frame+frames-1
    of a clip whose sound (mono, RATE) starts with its first frame; NaN for frames the sound does not
    reach (not known, rather than silence), None when it reaches none.

    Video frame i spans [i / fps, (i + 1) / fps) s, cut in SUBFRAMES equal steps; a WINDOW-long window
    is centred on each step."""
    step = 1.0 / (fps * SUBFRAMES)
    starts = (first_frame + np.arange(frames)[:, None]) / fps + np.arange(SUBFRAMES)[None, :] * step
    centres = np.round((starts.reshape(-1) + step / 2) * RATE).astype(int)
    half = WINDOW // 2
    padded = np.pad(sound.astype(np.float32), (half, max(0, int(centres.max(initial=0)) + half - len(sound))))
    windows = padded[centres[:, None] + np.arange(WINDOW)[None, :]] * np.hanning(WINDOW).astype(np.float32)
    power = np.abs(np.fft.rfft(windows, n=N_FFT)) ** 2
    logmel = np.log(power @ mel_filters().T + 1e-8).reshape(frames, SUBFRAMES, MEL_BANDS)
    heard = (centres < len(sound)).reshape(frames, SUBFRAMES).all(axis=1)
    if not heard.any():
        return None
    known = logmel[heard]
    logmel = (logmel - known.mean(axis=(0, 1))) / (known.std(axis=(0, 1)) + 1e-3)
    logmel[~heard] = np.nan
    return logmel.reshape(frames, DIMS).astype(np.float32)
