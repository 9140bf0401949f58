"""Sound: a clip's audio track, and a microphone or a file streamed through one callback.

Both streams call `callback(indata, frames, status)` — sounddevice's signature, less the block's
timing, which the consumer takes from the samples counted — from their own thread, in BLOCK_MS blocks:
`indata` is (frames, 1) float32, `status` is sounddevice's CallbackFlags from a microphone and None from
a file (nothing can overflow). AudioRecording is the consumer the recorder gives
them. Whatever the callback raises ends the stream and is raised again by `check()` on the consumer's
thread, so a failure in the audio thread is never silently a take without sound.
"""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np


Callback = Callable[[np.ndarray, int, Any], None]
RATE = 16000  # samples a second sound is read at: the voice activity detector and the speech features are tuned to it
BLOCK_MS = 20.0  # the blocks both streams deliver


class AudioError(Exception):
    """Sound that cannot be read or recorded; the message is one line for the user."""


class NoAudioTrack(AudioError):
    """A file with no sound at all, as opposed to sound that could not be read this time."""


def read_audio(path: Path | str, rate: int = RATE) -> np.ndarray:
    """The first audio track of any file FFmpeg reads (GRID's mp4s carry 16 kHz AAC), float32 mono at `rate`,
    on the file's timeline: sample k is heard k / rate seconds from the file's start, where a video's frames
    are timed from too (capture.video_timeline), so a sound track that starts late is preceded by silence.
    A damaged packet is heard as its length of silence, as FFmpeg's own tools skip it, and the sound after
    it stays in time; a track whose format changes midway (a broadcast's) is read on in the new one."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:  # its own text names FFmpeg's error number and the path again
        raise AudioError(f"cannot read {path}: {(e.strerror or str(e)).lower()}") from None
    with container:
        if not container.streams.audio:
            raise NoAudioTrack(f"{path} has no audio track")
        track = container.streams.audio[0]
        origin = (container.start_time or 0) / 1e6  # the file's start, in seconds of its streams' times
        sound_starts = None
        chunks: list[np.ndarray] = []
        resampler, form = None, None  # the resampler for the format the frames come in
        damaged: av.FFmpegError | None = None
        decoded = False

        def resampled(frame: av.AudioFrame | None) -> list[np.ndarray]:  # None: what the resampler holds
            return [out.to_ndarray()[0] for out in resampler.resample(frame)] if resampler else []

        try:
            for packet in container.demux(track):
                try:
                    frames = packet.decode()
                except av.FFmpegError as e:  # a damaged packet: its time is kept, in silence
                    damaged = e
                    if packet.duration and packet.time_base:
                        chunks.append(np.zeros(round(packet.duration * packet.time_base * rate), np.float32))
                    continue
                for frame in frames:
                    decoded = True
                    if sound_starts is None and frame.time is not None:
                        sound_starts = frame.time
                    if (frame.format.name, frame.layout.name, frame.sample_rate) != form:
                        chunks += resampled(None)
                        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
                        form = (frame.format.name, frame.layout.name, frame.sample_rate)
                    chunks += resampled(frame)
            chunks += resampled(None)
        except av.FFmpegError as e:
            damaged = e
        if damaged is not None and not decoded:
            raise AudioError(f"cannot decode the sound of {path}: {(damaged.strerror or str(damaged)).lower()}")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    shift = 0 if sound_starts is None else round((sound_starts - origin) * rate)
    return np.concatenate([np.zeros(shift, np.float32), samples]) if shift > 0 else samples[-shift:]


class AudioRecording:
    """The consumer: keeps every block, copied (PortAudio reuses its buffer). Time is counted in samples
    from the stream's start, so it never drifts from the sound itself."""

    def __init__(self, rate: int):
        self.rate = rate
        self.overflows = 0  # blocks the driver reported lost samples before
        self._blocks: list[np.ndarray] = []
        self._received = 0
        self._changed = threading.Condition()

    def __call__(self, indata: np.ndarray, frames: int, status: Any) -> None:
        block = np.array(indata[:frames, 0], dtype=np.float32)
        with self._changed:
            self._blocks.append(block)
            self._received += frames
            self.overflows += bool(status)
            self._changed.notify_all()

    @property
    def seconds(self) -> float:
        """How much sound has arrived: the time since the start, in the stream's own clock."""
        return self._received / self.rate

    def wait_for(self, seconds: float, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.seconds >= seconds, timeout)

    def samples(self) -> np.ndarray:
        with self._changed:
            return np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)


class _Stream:
    """What both streams share: the callback's exceptions are kept for the consumer's thread."""

    def __init__(self, callback: Callback, rate: int):
        self.callback = callback
        self.rate = rate
        self.blocksize = max(1, round(rate * BLOCK_MS / 1000))
        self.error: BaseException | None = None

    def _deliver(self, indata: np.ndarray, frames: int, status: Any) -> bool:
        try:
            self.callback(indata, frames, status)
            return True
        except BaseException as e:  # noqa: BLE001 - even KeyboardInterrupt: it belongs to the consumer
            self.error = e
            return False

    def check(self) -> None:
        """Raise, on the caller's thread, what the callback raised on the audio thread."""
        if self.error is not None:
            raise self.error


# What a session can do without a microphone, said with each way one fails.
WITHOUT_MICROPHONE = "; to record from a file instead, use --audio-file FILE, or --silent for mouthed words"


class RateConverter:
    """Sound blocks at one rate in, at another out, continuous across blocks (FFmpeg's resampler keeps the
    filter's state between them): for a microphone that records only at its own rate."""

    def __init__(self, rate_in: int, rate_out: int):
        self.rate_in = rate_in
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
        self._next = 0  # the next block's first sample, counted at rate_in

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """(n,) float32 at rate_in -> float32 at rate_out; the resampler's filter holds back a few samples."""
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32)[None, :], format="flt",
                                           layout="mono")
        frame.sample_rate, frame.time_base, frame.pts = self.rate_in, Fraction(1, self.rate_in), self._next
        self._next += len(block)
        out = [f.to_ndarray()[0] for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def at_rate(callback: Callback, rate_in: int, rate_out: int) -> Callback:
    """The callback of a consumer at rate_out, given blocks at rate_in: each converted as it comes."""
    convert = RateConverter(rate_in, rate_out)

    def call(indata: np.ndarray, frames: int, status: Any) -> None:
        block = convert(indata[:frames, 0])
        callback(block[:, None], len(block), status)

    return call


class MicrophoneStream(_Stream):
    """The default input device through sounddevice, at `rate`; at the device's own rate, converted, when it
    takes no other (a raw ALSA device, Windows' WASAPI)."""

    def __init__(self, callback: Callback, rate: int = RATE):
        super().__init__(callback, rate)
        try:
            import sounddevice  # imported here: it needs the PortAudio library, which only recording does
        except OSError:
            raise AudioError("no microphone support: the PortAudio library is missing (apt install "
                             f"libportaudio2){WITHOUT_MICROPHONE}") from None
        self._abort, self._failed = sounddevice.CallbackAbort, sounddevice.PortAudioError
        try:
            device_rate = rate
            try:
                sounddevice.check_input_settings(samplerate=rate, channels=1, dtype="float32")
            except sounddevice.PortAudioError:  # not at this rate, or no device: its own rate, or the error
                device_rate = round(sounddevice.query_devices(kind="input")["default_samplerate"])
                self.callback = at_rate(callback, device_rate, rate)
            self._stream = sounddevice.InputStream(samplerate=device_rate, channels=1, dtype="float32",
                                                   blocksize=round(self.blocksize * device_rate / rate),
                                                   callback=self._call)
        except (sounddevice.PortAudioError, ValueError) as e:
            raise AudioError(f"cannot open a microphone ({e}){WITHOUT_MICROPHONE}") from None

    def _call(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if not self._deliver(indata, frames, status):
            raise self._abort

    def start(self) -> "MicrophoneStream":
        try:  # opened is not started: a device taken by another program, or unplugged meanwhile, fails here
            self._stream.start()
        except self._failed as e:
            raise AudioError(f"cannot start the microphone ({e}){WITHOUT_MICROPHONE}") from None
        return self

    def stop(self) -> None:
        self._stream.close()


class FileAudioStream(_Stream):
    """Stands in for a microphone: a file's sound, delivered through the callback in blocks on a thread,
    each once all its samples would have been heard (`realtime`), or as fast as the consumer takes them."""

    def __init__(self, path: Path | str, callback: Callback, rate: int = RATE, realtime: bool = True):
        super().__init__(callback, rate)
        self.samples = read_audio(path, rate)
        self.realtime = realtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audio", daemon=True)

    def start(self) -> "FileAudioStream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # stopped before it started: nothing to join
            self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        for begin in range(0, len(self.samples), self.blocksize):
            block = self.samples[begin:begin + self.blocksize, None]
            if self.realtime:
                self._stop.wait(started + (begin + len(block)) / self.rate - time.monotonic())
            if self._stop.is_set():
                return
            if not self._deliver(block, len(block), None):
                return
