"""Fast features beside emotion, at 100 frames per second: input level, onset strength, tempo and beats.

Why our own beat tracker: the well-kept online trackers are not usable here. aubio is GPL-3 (m2e is MIT) and
madmom's models are CC BY-NC-SA (and madmom's last release does not build on current NumPy/Python). So this is a
small, documented causal estimator in the classic two-stage form (Scheirer 1998; Ellis 2007; Davies & Plumbley
2007):

1. Onset strength: spectral flux of log-compressed magnitudes (2048-point FFT at the input rate, 10 ms hop),
   pooled into 24 log-spaced bands, half-wave rectified, normalised by a slowly decaying running maximum -> 0-1.
2. Tempo: every 0.5 s, the autocorrelation of the last 8 s of onset strength over lags of 50-220 BPM, weighted by
   a log-normal prior centred on 120 BPM (one octave wide) to resolve octave errors, refined by parabolic
   interpolation, then smoothed (a new tempo must persist for two updates to replace the old one).
3. Beat phase: a comb filter over the last 4 s (the sum of onset strength at every multiple of the period
   back from now) gives the phase; beats are predicted forward (a beat fires when the clock reaches the next
   predicted beat), and each phase update nudges the prediction by half its error, so the output is causal and
   steady (no beat is emitted twice, none is taken back).

Reported values (per output step): ``level_db`` / ``peak_db`` (RMS / peak dBFS over the last 50 ms), ``level``
(RMS mapped -60..0 dB onto 0-1), ``onset`` (0-1), ``tempo`` (BPM, 0 until known), ``beat_phase`` (0 at a beat,
rising to 1), and a ``beat`` flag when a beat fired since the previous step.
"""

from __future__ import annotations

import logging
import math
import threading

import numpy as np

log = logging.getLogger("m2e.realtime.features")

FRAME_RATE = 100.0  # onset frames per second
N_FFT = 2048
N_BANDS = 24
TEMPO_WINDOW_S = 8.0
PHASE_WINDOW_S = 4.0
MIN_BPM, MAX_BPM, PRIOR_BPM = 50.0, 220.0, 120.0


class BeatTracker:
    """The causal onset/tempo/beat estimator (pure computation; feed it audio blocks in order).

    Parameters
    ----------
    sample_rate : int
        Rate of the audio given to :meth:`process`.
    """

    def __init__(self, sample_rate: int):
        self.sr = int(sample_rate)
        self.hop = max(1, int(round(self.sr / FRAME_RATE)))
        self.frame_rate = self.sr / self.hop
        self._window = np.hanning(N_FFT).astype(np.float32)
        freqs = np.fft.rfftfreq(N_FFT, 1.0 / self.sr)
        edges = np.geomspace(40.0, min(16000.0, self.sr / 2), N_BANDS + 1)
        self._band = np.clip(np.searchsorted(edges, freqs) - 1, -1, N_BANDS - 1)
        self._band_ok = (freqs >= edges[0]) & (freqs < edges[-1])
        self._buf = np.zeros(N_FFT, dtype=np.float32)  # the last N_FFT samples
        self._pending = 0  # samples received since the last frame
        self._prev_bands: np.ndarray | None = None
        self._peak = 1e-3  # running maximum of the flux (normaliser)
        self.env = np.zeros(int(TEMPO_WINDOW_S * self.frame_rate), dtype=np.float32)  # onset strength history
        self.frames = 0
        self.onset = 0.0
        self.tempo = 0.0
        self._candidate = 0.0
        self._next_tempo_frame = int(2.0 * self.frame_rate)
        self.next_beat: float | None = None  # frame index of the next predicted beat
        self.beats: list[float] = []  # beat times (s since the first sample), bounded
        self._beat_flag = False

    def process(self, audio: np.ndarray) -> None:
        """Consume mono float32 audio (any block size)."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        pos = 0
        while pos < x.size:
            take = min(self.hop - self._pending, x.size - pos)
            chunk = x[pos: pos + take]
            self._buf = np.roll(self._buf, -take)
            self._buf[-take:] = chunk
            self._pending += take
            pos += take
            if self._pending == self.hop:
                self._pending = 0
                self._frame()

    def _frame(self) -> None:
        mag = np.abs(np.fft.rfft(self._buf * self._window))
        bands = np.bincount(self._band[self._band_ok], weights=np.log1p(100.0 * mag[self._band_ok]),
                            minlength=N_BANDS)
        flux = 0.0 if self._prev_bands is None else float(np.maximum(bands - self._prev_bands, 0.0).sum())
        self._prev_bands = bands
        self._peak = max(flux, self._peak * math.exp(-1.0 / (10.0 * self.frame_rate)), 1e-3)  # ~10 s decay
        self.onset = min(1.0, flux / self._peak)
        self.env = np.roll(self.env, -1)
        self.env[-1] = flux
        self.frames += 1
        if self.frames >= self._next_tempo_frame:
            self._next_tempo_frame = self.frames + int(0.5 * self.frame_rate)
            self._update_tempo()
        if self.next_beat is not None and self.frames >= self.next_beat:
            self._beat_flag = True
            self.beats.append(self.frames / self.frame_rate)
            del self.beats[:-64]
            self.next_beat += self.frame_rate * 60.0 / self.tempo

    def _update_tempo(self) -> None:
        n = min(self.frames, self.env.size)
        e = self.env[-n:] - self.env[-n:].mean()
        if n < 2 * self.frame_rate or not np.any(e):
            return
        lo = int(self.frame_rate * 60.0 / MAX_BPM)
        hi = min(int(self.frame_rate * 60.0 / MIN_BPM), n - 1)
        ac = np.correlate(e, e, mode="full")[n - 1: n + hi + 1]
        lags = np.arange(lo, hi + 1)
        bpm = 60.0 * self.frame_rate / lags
        prior = np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / 1.0) ** 2)
        score = ac[lo: hi + 1] * prior
        i = int(np.argmax(score))
        if score[i] <= 0:
            return
        lag = float(lags[i])
        if 0 < i < len(score) - 1:  # parabolic refinement of the peak
            a, b, c = score[i - 1], score[i], score[i + 1]
            denom = a - 2 * b + c
            if denom < 0:
                lag += 0.5 * (a - c) / denom
        new = 60.0 * self.frame_rate / lag
        if self.tempo == 0.0 or abs(new - self.tempo) / self.tempo < 0.04:
            self.tempo = new if self.tempo == 0.0 else 0.8 * self.tempo + 0.2 * new
        elif self._candidate and abs(new - self._candidate) / self._candidate < 0.04:
            self.tempo = new  # the new tempo held for two updates: switch
            self._candidate = 0.0
        else:
            self._candidate = new
        self._update_phase()

    def _update_phase(self) -> None:
        period = self.frame_rate * 60.0 / self.tempo
        n = min(self.frames, int(PHASE_WINDOW_S * self.frame_rate), self.env.size)
        recent = self.env[-n:]
        offsets = np.arange(int(period))
        scores = np.zeros(offsets.size)
        for j in range(int(n // period)):
            idx = (n - 1 - offsets - int(round(j * period)))
            ok = idx >= 0
            scores[ok] += recent[idx[ok]] * (0.8 ** j)  # recent beats count more
        phase = int(np.argmax(scores))  # frames since the last beat
        predicted = self.frames - 1 - phase + period
        while predicted <= self.frames:
            predicted += period
        if self.next_beat is None:
            self.next_beat = predicted
            return
        error = predicted - self.next_beat
        error -= period * round(error / period)  # wrap into (-period/2, period/2]
        self.next_beat += 0.5 * error
        if self.next_beat <= self.frames:  # never fire a beat in the past: skip to the next one
            self.next_beat += period

    def take_beat(self) -> bool:
        """True once per beat fired since the last call."""
        beat, self._beat_flag = self._beat_flag, False
        return beat

    @property
    def beat_phase(self) -> float:
        if self.next_beat is None or not self.tempo:
            return 0.0
        period = self.frame_rate * 60.0 / self.tempo
        return float(min(1.0, max(0.0, 1.0 - (self.next_beat - self.frames) / period)))


class FastFeatures:
    """Follows a source's ring buffer on a thread and keeps the latest fast features (see the module doc).

    Parameters
    ----------
    source : Source
        The live source (its ring buffer is read, never written).
    """

    LEVEL_S = 0.05

    def __init__(self, source):
        self.source = source
        self.tracker: BeatTracker | None = None
        self._lock = threading.Lock()
        self._values = {"level_db": -120.0, "peak_db": -120.0, "level": 0.0, "onset": 0.0, "tempo": 0.0,
                        "beat_phase": 0.0}
        self._beat = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="m2e-features", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def snapshot(self) -> tuple[dict, bool]:
        """(feature values, a beat fired since the previous call)."""
        with self._lock:
            beat, self._beat = self._beat, False
            return dict(self._values), beat

    def _run(self) -> None:
        src = self.source
        ring = src.ring
        self.tracker = BeatTracker(src.sample_rate)
        level_n = max(1, int(self.LEVEL_S * src.sample_rate))
        pos = ring.written
        while not self._stop.wait(0.01):
            written = ring.written
            if written - pos > ring.capacity // 2 or written < pos:  # fell far behind, or the ring was reset
                pos = max(0, written - level_n)
            if written == pos:
                continue
            block = ring.read(written, written - pos)
            pos = written
            if block is None:
                continue
            self.tracker.process(block)
            tail = ring.read(written, min(level_n, written))
            if tail is None or not tail.size:
                continue
            rms = float(np.sqrt(np.mean(np.square(tail))))
            peak = float(np.max(np.abs(tail)))
            level_db = 20.0 * math.log10(max(rms, 1e-6))
            values = {"level_db": level_db, "peak_db": 20.0 * math.log10(max(peak, 1e-6)),
                      "level": min(1.0, max(0.0, (level_db + 60.0) / 60.0)), "onset": self.tracker.onset,
                      "tempo": self.tracker.tempo, "beat_phase": self.tracker.beat_phase}
            beat = self.tracker.take_beat()
            with self._lock:
                self._values = values
                self._beat = self._beat or beat
