"""Audio building blocks: the mel scale and its triangular filter bank (librosa's, which Whisper ships as
mel_filters.npz), and the log-mel spectrogram Whisper computes from 16 kHz mono audio."""

from __future__ import annotations

import numpy as np

_F_SP = 200.0 / 3  # Slaney scale: linear below 1 kHz (66.7 Hz per mel) ...
_MIN_LOG_HZ, _MIN_LOG_MEL = 1000.0, 15.0
_LOG_STEP = np.log(6.4) / 27.0  # ... logarithmic above it
_MIN_FRAMES = 100  # log-mel frames computed even when fewer hold signal


def hz_to_mel(freq, mel_scale: str = "slaney"):
    freq = np.asarray(freq, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    mels = freq / _F_SP
    above = freq >= _MIN_LOG_HZ
    return np.where(above, _MIN_LOG_MEL + np.log(np.maximum(freq, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP, mels)


def mel_to_hz(mels, mel_scale: str = "slaney"):
    mels = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = mels * _F_SP
    above = mels >= _MIN_LOG_MEL
    return np.where(above, _MIN_LOG_HZ * np.exp(_LOG_STEP * (mels - _MIN_LOG_MEL)), freqs)


def mel_filter_bank(num_frequency_bins: int, num_mel_filters: int, min_frequency: float, max_frequency: float,
                    sampling_rate: int, norm: str | None = "slaney", mel_scale: str = "slaney") -> np.ndarray:
    """(num_frequency_bins, num_mel_filters) float64 triangles evenly spaced on the mel scale; `norm="slaney"`
    scales each to unit area (librosa.filters.mel's defaults)."""
    fft_freqs = np.linspace(0, sampling_rate / 2, num_frequency_bins)
    mels = np.linspace(hz_to_mel(min_frequency, mel_scale), hz_to_mel(max_frequency, mel_scale), num_mel_filters + 2)
    edges = mel_to_hz(mels, mel_scale)  # (M + 2,) lower edge, center, upper edge of each triangle
    widths = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]  # (F, M + 2)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        filters *= 2.0 / (edges[2:] - edges[:-2])
    return filters


def log_mel_spectrogram(waveforms: np.ndarray, mel_filters: np.ndarray, n_fft: int, hop_length: int,
                        dither: float = 0.0):
    """(B, N) float32 audio -> (B, mels, N // hop) Whisper log-mel: power STFT (Hann, centered, reflect-padded,
    last frame dropped), mel, log10 floored at 1e-10, each clip clamped to its max - 8, then (x + 4) / 4.

    Frames that see only trailing zeros (Whisper's padding to 30 s) have power 0, so their value is known: the
    STFT and mel projection run over the frames that touch a nonzero sample, the rest get the all-zero value."""
    import torch

    x = np.ascontiguousarray(waveforms, dtype=np.float32)
    if dither:
        x = (torch.from_numpy(x) + dither * torch.randn(x.shape, dtype=torch.float32)).numpy()
    pad = n_fft // 2
    if x.shape[1] <= pad:
        from ..errors import InputError

        raise InputError(f"audio of {x.shape[1]} samples is too short for a centered STFT of n_fft={n_fft}: "
                         f"it needs more than {pad} (pad it, e.g. padding='max_length')")
    frames = x.shape[1] // hop_length
    computed = frames if dither else _frames_with_signal(x, n_fft, hop_length, frames)
    # frame t reads samples [t * hop - pad, t * hop - pad + n_fft): these `computed` frames never reach the
    # reflected tail, so a shorter input yields them unchanged
    length = min(x.shape[1], max((computed - 1) * hop_length + n_fft - pad, pad + 1))
    # torch.stft's steps: reflect-pad, frame, window, real FFT; numpy (on the calling thread) for the exact ones,
    # torch for what must round as Transformers' torch code does (FFT, |z|, matmul, log10): each torch op is a
    # parallel region, and those stall on a busy machine
    padded = np.pad(x[:, :length], ((0, 0), (pad, pad)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop_length][:, :computed]
    spectrum = torch.fft.rfft(torch.from_numpy(windows * torch.hann_window(n_fft).numpy()))  # (B, computed, F)
    power = spectrum.abs().numpy()
    np.square(power, out=power)
    mel = (torch.from_numpy(mel_filters.astype(np.float32)).T @ torch.from_numpy(power).transpose(1, 2)).numpy()
    log_spec = torch.from_numpy(np.maximum(mel, np.float32(1e-10), out=mel)).log10_().numpy()  # (B, mels, computed)
    floor = torch.zeros(()).clamp(min=1e-10).log10().numpy()  # an all-zero frame, through the same float32 ops
    peak = log_spec.max(axis=(1, 2), keepdims=True) - np.float32(8.0)  # the skipped frames (floor) cannot raise it
    out = np.empty((*log_spec.shape[:2], frames), dtype=np.float32)
    np.maximum(log_spec, peak, out=out[..., :computed])
    out[..., computed:] = np.maximum(floor, peak)
    out += np.float32(4.0)
    out /= np.float32(4.0)
    return out


def _frames_with_signal(x: np.ndarray, n_fft: int, hop_length: int, frames: int) -> int:
    """How many leading frames of a (B, N) batch touch a nonzero sample (all `frames` when the reflected
    tail of the centered STFT could hold one)."""
    N = x.shape[1]
    nonzero = np.flatnonzero(x.any(axis=0))
    end = int(nonzero[-1]) + 1 if len(nonzero) else 0  # samples from `end` on are zeros in every clip
    if end > N - n_fft:
        return frames
    # at least _MIN_FRAMES: BLAS multiplies a few columns through another kernel, rounding differently
    return min(frames, max(-(-(end + n_fft // 2) // hop_length), _MIN_FRAMES))


def load_audio(source) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], sampling rate) of a WAV file path or WAV bytes, read with the standard
    library (8-bit unsigned, 16/24/32-bit signed PCM); other formats through soundfile when it is installed.
    Several channels are averaged into one."""
    import io
    import os
    import wave

    from ..errors import InputError

    if isinstance(source, str) and source.startswith(("http://", "https://")):
        raise InputError(f"audio {source!r} is a URL; pretrained does not download audio: save it to a file first")
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise InputError(f"audio file {os.fspath(source)!r} does not exist")
    is_path = isinstance(source, (str, os.PathLike))
    what = f"audio file {os.fspath(source)!r}" if is_path else f"audio bytes ({len(source)} bytes)"
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with wave.open(stream if not isinstance(stream, os.PathLike) else os.fspath(stream), "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as e:
        return _load_with_soundfile(source, what, e)
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        samples = np.frombuffer(raw, dtype).astype(np.float32) / float(-np.iinfo(dtype).min)
    elif width == 3:  # 24-bit little-endian: sign-extend into int32
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / 2.0**23
    else:
        raise InputError(f"{what}: {8 * width}-bit samples are not supported")
    return samples.reshape(-1, channels).mean(axis=1).astype(np.float32), rate


def _load_with_soundfile(source, what: str, wav_error: Exception) -> tuple[np.ndarray, int]:
    import io

    from ..errors import InputError

    try:
        import soundfile
    except ImportError:
        raise InputError(f"{what} is not a PCM WAV file ({wav_error}); other formats need soundfile: "
                         "pip install soundfile") from wav_error
    try:
        samples, rate = soundfile.read(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source,
                                       dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own error types for unreadable data
        raise InputError(f"{what} is not a readable audio file: {e}") from e
    return samples.mean(axis=1).astype(np.float32), rate


def resample(samples: np.ndarray, orig_rate: int, new_rate: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> np.ndarray:
    """Band-limited resampling with a Hann-windowed sinc (torchaudio's default method and parameters)."""
    import math

    import torch

    if orig_rate == new_rate:
        return samples
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    base = min(orig, new) * rolloff  # cut-off below the lower Nyquist frequency
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)  # (new, taps)
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None, None]
    x = torch.nn.functional.pad(x, (width, width + orig))
    y = torch.nn.functional.conv1d(x, kernels[:, None].float(), stride=orig)  # (1, new, frames)
    out = y.transpose(1, 2).reshape(-1)[: math.ceil(new * len(samples) / orig)]
    return out.numpy()
