"""Audio input: formats, channel counts, sample rates, streaming, and the clear errors for bad input."""

from __future__ import annotations

import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from m2e_plugin.audio import AudioError, info, load_audio, stream_audio, to_mono
from m2e_plugin.demo import synth_music

SR = 22050


@pytest.fixture(scope="module")
def tone():
    return synth_music(2.0, SR)


def test_missing_directory_and_empty_files(tmp_path):
    with pytest.raises(AudioError, match="file not found") as e:
        load_audio(tmp_path / "nope.wav")
    assert "nope.wav" in str(e.value) and e.value.cause == "file not found"
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty.wav: file is empty \(0 bytes\)"):
        load_audio(empty)
    with pytest.raises(AudioError, match="file not found"):
        next(stream_audio(tmp_path / "nope.flac", 24000))


def test_not_audio(tmp_path):
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioError, match="notes.mp3: not a readable audio file"):
        load_audio(text)
    with pytest.raises(AudioError, match="notes.mp3"):
        list(stream_audio(text, 24000))


def test_random_bytes_mp3_error_does_not_claim_the_file_is_missing(tmp_path):
    # libsndfile words undecodable MP3 data as "File does not exist or is not a regular file"; the error must
    # name the file and say the data is corrupt instead.
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(np.random.default_rng(0).bytes(50_000))
    for call in (lambda: load_audio(junk), lambda: list(stream_audio(junk, 24000)), lambda: info(junk)):
        with pytest.raises(AudioError, match="junk.mp3: not a readable audio file") as e:
            call()
        assert "does not exist" not in str(e.value) and "not available" not in str(e.value)
        assert str(e.value).count(str(junk)) == 1  # soundfile's own quoting of the path is dropped


def test_zero_length_audio(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 2), dtype=np.float32), SR)
    assert path.stat().st_size > 0  # a valid header with no frames
    with pytest.raises(AudioError, match="zero.wav: audio is empty"):
        load_audio(path)
    with pytest.raises(AudioError, match="audio is empty"):
        list(stream_audio(path, 24000))
    with pytest.raises(AudioError, match="empty"):
        load_audio((np.zeros(0, dtype=np.float32), SR))


def test_nan_and_inf(tmp_path, tone):
    bad = tone.copy()
    bad[100] = np.nan
    bad[200] = np.inf
    with pytest.raises(AudioError, match="2 NaN/inf samples"):
        load_audio((bad, SR))
    path = tmp_path / "nan.wav"
    late = tone.copy()
    late[-SR // 4:] = np.nan  # a file is decoded in blocks: say where the bad samples start, not one block's count
    sf.write(path, late, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=rf"nan.wav: audio contains NaN/inf samples, the first at "
                                         rf"{(tone.size - SR // 4) / SR:.2f} s"):
        load_audio(path)
    with pytest.raises(AudioError, match="NaN/inf"):
        list(stream_audio(path, 24000))


def test_silence_and_very_short_clips_are_valid(tmp_path):
    x, sr = load_audio((np.zeros(SR, dtype=np.float32), SR), target_sr=24000)
    assert sr == 24000 and x.size == 24000 and not x.any()
    path = tmp_path / "short.wav"
    sf.write(path, synth_music(0.1, SR), SR)
    x, sr = load_audio(path, target_sr=24000)
    assert x.size == 2400 and np.isfinite(x).all()


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 96000])
def test_any_sample_rate_resamples(tmp_path, rate):
    t = np.arange(rate) / rate
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, y, rate)
    x, sr = load_audio(path, target_sr=24000)
    assert sr == 24000 and abs(x.size - 24000) <= 1
    # The 440 Hz tone survives resampling: spectral peak within one bin.
    spec = np.abs(np.fft.rfft(x[:24000]))
    assert abs(int(np.argmax(spec)) - 440) <= 1
    native, native_sr = load_audio(path)
    assert native_sr == rate and native.size == rate


def test_six_channels_are_averaged(tmp_path):
    frames = 4000
    data = np.stack([np.full(frames, 0.1 * (c + 1), dtype=np.float32) for c in range(6)], axis=1)
    path = tmp_path / "six.wav"
    sf.write(path, data, 48000, subtype="FLOAT")
    x, sr = load_audio(path)
    assert sr == 48000 and x.shape == (frames,)
    np.testing.assert_allclose(x, 0.35, atol=1e-6)
    blocks = list(stream_audio(path, 48000, block_seconds=0.05))
    np.testing.assert_allclose(np.concatenate(blocks), 0.35, atol=1e-6)
    # A file with fewer frames than channels still averages across channels.
    sf.write(tmp_path / "few.wav", data[:4], 48000, subtype="FLOAT")
    x, _ = load_audio(tmp_path / "few.wav")
    np.testing.assert_allclose(x, [0.35] * 4, atol=1e-6)
    # Arrays: (frames, channels) and (channels, frames) both mix down.
    np.testing.assert_allclose(to_mono(data), 0.35, atol=1e-6)
    np.testing.assert_allclose(to_mono(data.T), 0.35, atol=1e-6)


@pytest.mark.parametrize("ext,fmt,subtype", [(".flac", "FLAC", None), (".ogg", "OGG", "VORBIS"),
                                             (".mp3", "MP3", "MPEG_LAYER_III")])
def test_compressed_formats(tmp_path, tone, ext, fmt, subtype):
    path = tmp_path / f"clip{ext}"
    sf.write(path, np.stack([tone, tone], axis=1), SR, format=fmt, subtype=subtype)
    x, sr = load_audio(path, target_sr=24000)
    assert sr == 24000 and abs(x.size / 24000 - 2.0) < 0.1
    ref, _ = load_audio((tone, SR), target_sr=24000)
    n = min(ref.size, x.size)
    if fmt == "FLAC":  # lossless
        np.testing.assert_allclose(x[:n], ref[:n], atol=1e-3)
    else:  # lossy codecs add delay and error; the signal's energy is still there
        assert 0.5 < np.sqrt(np.mean(x[:n] ** 2)) / np.sqrt(np.mean(ref[:n] ** 2)) < 1.5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_m4a_through_ffmpeg(tmp_path, tone):
    wav = tmp_path / "src.wav"
    sf.write(wav, tone, SR)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "128k", str(m4a)],
                   check=True)
    with pytest.raises(Exception):
        sf.info(m4a)  # soundfile cannot read it: the ffmpeg fallback is what is tested
    assert info(m4a).sample_rate == SR
    x, sr = load_audio(m4a, target_sr=24000)
    assert sr == 24000 and abs(x.size / 24000 - 2.0) < 0.1
    blocks = list(stream_audio(m4a, 24000, block_seconds=0.5))
    assert len(blocks) >= 4 and all(b.dtype == np.float32 for b in blocks)


def test_integer_pcm_arrays_are_scaled():
    y = (synth_music(0.5, SR) * 32767).astype(np.int16)
    x, _ = load_audio((y, SR))
    assert x.dtype == np.float32 and 0.3 < np.abs(x).max() <= 1.0


def test_streaming_blocks_and_bounded_memory(tmp_path):
    rate = 8000
    seconds = 600
    rng = np.random.default_rng(0)
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(seconds // 60):
            f.write((0.1 * rng.standard_normal(60 * rate)).astype(np.float32))
    tracemalloc.start()
    try:
        sizes = []
        for block in stream_audio(path, rate, block_seconds=30):
            sizes.append(block.size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sizes == [30 * rate] * 20
    # Ten minutes of float32 would be 19.2 MB; streaming holds about one 30 s block (0.96 MB) at a time.
    assert peak < 5_000_000, peak


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_formats_stream_with_bounded_memory(tmp_path):
    # Regression: M4A & co. used to be decoded whole through ffmpeg before streaming (a 2-hour file = GBs).
    rate, seconds = 8000, 600
    m4a = tmp_path / "long.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"anoisesrc=a=0.1:r={rate}:d={seconds}", "-c:a", "aac", "-b:a", "32k", str(m4a)], check=True)
    tracemalloc.start()
    try:
        total = sum(block.size for block in stream_audio(m4a, rate, block_seconds=30))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(total / rate - seconds) < 1.0
    # The whole decoded file would be 19.2 MB of float32; one 30 s block is ~1 MB.
    assert peak < 6_000_000, peak
    # Stopping early must not leave an ffmpeg process behind, and a truncated file still names the file.
    gen = stream_audio(m4a, rate, block_seconds=30)
    next(gen)
    gen.close()
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(m4a.read_bytes()[:3000])
    with pytest.raises(AudioError, match="broken.m4a"):
        list(stream_audio(broken, rate))


def test_array_inputs(tone):
    x, sr = load_audio((tone, SR))
    assert sr == SR and x.dtype == np.float32 and np.array_equal(x, tone)
    with pytest.raises(TypeError, match="sample rate"):
        load_audio(tone)
    with pytest.raises(AudioError, match="invalid sample rate"):
        load_audio((tone, 0))
