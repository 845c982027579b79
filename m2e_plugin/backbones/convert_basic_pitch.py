"""Convert basic-pitch's NMP network (the ONNX model inside the ``basic-pitch`` 0.4.0 wheel) into the package's
safetensors and model card (once; needs the ``onnx`` package: ``pip install 'm2e[convert]'``).

    pip download --no-deps basic-pitch==0.4.0 -d /tmp/bp
    python -m m2e_plugin.backbones.convert_basic_pitch /tmp/bp/basic_pitch-0.4.0-py2.py3-none-any.whl

Reads ``basic_pitch/saved_models/icassp_2022/nmp.onnx`` from the wheel, takes its initializers by the role they play
in the graph (the CQT's two kernel banks, anti-alias filter and per-bin scale, the folded batch normalisation, the six
convolutions, each checked against the port's shapes, strides and padding) and writes
``models/weights/basic_pitch_nmp.safetensors`` and ``basic_pitch_nmp.json`` (source, the wheel's sha256, the
Apache-2.0 licence and NOTICE, the paper, parity with onnxruntime when it is installed). basic-pitch is
Apache-2.0 (Spotify AB).
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

ONNX_MEMBER = "basic_pitch/saved_models/icassp_2022/nmp.onnx"
NOTICE_MEMBER = "basic_pitch-0.4.0.dist-info/NOTICE"
WHEEL_NAME = "basic_pitch-0.4.0-py2.py3-none-any.whl"
CITATION = ("Rachel M. Bittner, Juan José Bosch, David Rubinstein, Gabriel Meseguer-Brocal, Sebastian Ewert: "
            "A Lightweight Instrument-Agnostic Model for Polyphonic Note Transcription and Multipitch Estimation. "
            "ICASSP 2022")
# Convolution weight shape -> (port module, strides, pads as ONNX writes them: begin h, begin w, end h, end w).
_CONVS = {
    (8, 8, 3, 39): ("contour_hidden", [1, 1], [1, 19, 1, 19]),
    (1, 8, 5, 5): ("contour_out", [1, 1], [2, 2, 2, 2]),
    (32, 1, 7, 7): ("note_hidden", [1, 3], [3, 2, 3, 2]),
    (1, 32, 7, 3): ("note_out", [1, 1], [3, 1, 3, 1]),
    (32, 8, 5, 5): ("onset_hidden", [1, 3], [2, 1, 2, 1]),
    (1, 33, 3, 3): ("onset_out", [1, 1], [1, 1, 1, 1]),
}


def onnx_state(model_bytes: bytes, source) -> dict[str, torch.Tensor]:
    """The port's state dict from the NMP ONNX graph (errors name ``source`` and what does not match)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state: dict[str, np.ndarray] = {}
    cqt_banks: list[str] = []
    for node in graph.node:
        consts = [inits[i] for i in node.input if i in inits]
        if node.op_type == "Conv":
            weight = inits[node.input[1]]
            bias = inits[node.input[2]] if len(node.input) > 2 else np.zeros(weight.shape[0])
            attrs = {a.name: list(onnx.helper.get_attribute_value(a)) for a in node.attribute
                     if a.name in ("strides", "pads")}
            if weight.shape == (36, 1, 1, 256):
                if node.input[1] not in cqt_banks:
                    cqt_banks.append(node.input[1])
                _expect(not np.any(bias), source, "a CQT convolution has a bias")
            elif weight.shape == (1, 1, 1, 256):
                _expect(not np.any(bias) and attrs["strides"] == [1, 2], source, "unexpected anti-alias filter")
                state["lowpass"] = weight[0]
            else:
                if weight.shape not in _CONVS:
                    raise ValueError(f"{source}: unexpected convolution of shape {weight.shape}")
                name, strides, pads = _CONVS[weight.shape]
                _expect(attrs.get("strides") == strides and attrs.get("pads", [0] * 4) == pads, source,
                        f"{name}: strides/pads {attrs} differ from the port's")
                state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
        elif node.op_type == "Mul" and consts and consts[0].shape == (309, 1, 1):
            state["bin_scale"] = consts[0].reshape(-1)
        elif node.op_type == "Mul" and consts and consts[0].shape == (1,):
            state["input_scale"] = consts[0]
        elif node.op_type == "Add" and consts and consts[0].shape == (1,):
            state["input_shift"] = consts[0]
    _expect(len(cqt_banks) == 2, source, f"expected two CQT kernel banks, found {len(cqt_banks)}")
    # Real and imaginary parts: the magnitude does not depend on which is which (the graph negates one).
    state["cqt_real"], state["cqt_imag"] = (inits[n][:, 0] for n in cqt_banks)
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def _expect(condition: bool, source, what: str) -> None:
    if not condition:
        raise ValueError(f"{source}: {what}; is this basic-pitch 0.4.0's nmp.onnx?")


def read_wheel(wheel: Path) -> tuple[bytes, str]:
    """The ONNX model's bytes and the NOTICE text of the basic-pitch wheel."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        missing = [m for m in (ONNX_MEMBER, NOTICE_MEMBER) if m not in names]
        if missing:
            raise ValueError(f"{wheel}: no {', '.join(missing)} inside; is this the basic-pitch 0.4.0 wheel?")
        return zf.read(ONNX_MEMBER), zf.read(NOTICE_MEMBER).decode("utf-8")


def onnx_parity(model_bytes: bytes, model, windows: np.ndarray) -> dict | None:
    """Largest absolute difference of each output between onnxruntime and the port (None without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    outputs = ["StatefulPartitionedCall:0", "StatefulPartitionedCall:1", "StatefulPartitionedCall:2"]
    theirs = session.run(outputs, {session.get_inputs()[0].name: windows[:, :, None]})
    with torch.inference_mode():
        ours = model(torch.from_numpy(windows))
    return {name: float(np.abs(a - b.numpy()).max()) for name, a, b in zip(("contour", "note", "onset"), theirs, ours)}


def parity_windows(seed: int = 0) -> np.ndarray:
    """Two test windows: a chord of harmonic tones with an onset, and noise (the card's parity figures)."""
    from m2e_plugin.backbones.basic_pitch import SAMPLE_RATE, WINDOW_SAMPLES

    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    chord = sum(0.2 / h * np.sin(2 * np.pi * f * h * t) for f in (220.0, 277.18, 329.63) for h in (1, 2, 3))
    chord[: WINDOW_SAMPLES // 3] = 0.0
    noise = np.random.default_rng(seed).standard_normal(WINDOW_SAMPLES) * 0.05
    return np.stack([chord, noise]).astype(np.float32)


def convert(wheel, out) -> dict:
    """Write the converted weights and their model card beside them; returns the card."""
    from m2e_plugin.backbones.basic_pitch import NoteTranscriber
    from m2e_plugin.backbones.convert_musicnn import sha256_of
    from m2e_plugin.safetensors_io import write_safetensors

    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel}: basic-pitch wheel not found (pip download --no-deps basic-pitch==0.4.0)")
    model_bytes, notice = read_wheel(wheel)
    state = onnx_state(model_bytes, wheel)
    model = NoteTranscriber()
    model.load_state_dict(state, strict=True)
    model.eval()
    metadata = {"source": f"PyPI basic-pitch 0.4.0 wheel ({WHEEL_NAME}), {ONNX_MEMBER}",
                "wheel_sha256": sha256_of(wheel), "licence": "Apache-2.0 (basic-pitch, Spotify AB)"}
    out = write_safetensors(out, state, metadata)
    card = {"name": "basic_pitch_nmp", **metadata, "notice": notice, "citation": CITATION,
            "parameters": int(sum(v.numel() for v in state.values())),
            "use": "m2e_plugin.harmony.transcription: note posteriors -> chroma for the offline chord recogniser "
                   "and the audio key",
            "parity_max_abs_diff_vs_onnxruntime": onnx_parity(model_bytes, model, parity_windows()),
            "converter": "python -m m2e_plugin.backbones.convert_basic_pitch WHEEL", "sha256": sha256_of(out)}
    out.with_suffix(".json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    return card


def main(argv=None) -> int:
    from m2e_plugin.backbones.basic_pitch import default_weights

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel", help=f"the {WHEEL_NAME} file")
    p.add_argument("-o", "--output", default=None, help="output .safetensors (default: the package's weights)")
    args = p.parse_args(argv)
    card = convert(args.wheel, args.output or default_weights())
    print(json.dumps({k: v for k, v in card.items() if k != "notice"}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
