"""OPTIONAL, run once: make the musicnn parity fixture ``tests/resources/musicnn_parity.npz`` with the ORIGINAL code.

Needs TensorFlow and librosa in a scratch environment (never the project's)::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras librosa
    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python benchmarks/musicnn_reference.py /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl

The wheel's own ``models.define_model`` graph is built and restored from its MSD_musicnn checkpoint with TF's
Saver; the input mel is librosa's, as the wheel's ``extractor.batch_data`` computes it (librosa 0.7 defaults:
centred STFT with reflection), but kept in float32. Audio: this repo's deterministic synthetic music (no recording
is copied into the repository) at a moderate and at a loud, clipping-prone level, one 3 s patch each. Stored:
the audio (int16), librosa's log-mel, the TF taggram (sigmoid) and penultimate (``bn_dense``) per patch, the
versions and the wheel's sha256. ``tests/test_musicnn.py`` checks the PyTorch port against it.
"""

import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for m2e_plugin.demo only (numpy)


def main(wheel: str) -> None:
    import librosa
    import tensorflow as tf

    from m2e_plugin.demo import synth_music

    tf.compat.v1.disable_eager_execution()
    tmp = tempfile.mkdtemp()
    zipfile.ZipFile(wheel).extractall(tmp)
    sys.path.insert(0, tmp)
    from musicnn import configuration as config
    from musicnn import models

    n = 186 * 256  # one 187-frame patch with a centred STFT
    signals = [synth_music(n / 16000 + 0.01, 16000, seed=1)[:n] * 0.5,
               np.clip(synth_music(n / 16000 + 0.01, 16000, seed=2, tempo=150.0)[:n] * 2.4, -1, 1)]
    audio = np.stack([np.round(s * 32767).astype(np.int16) for s in signals])
    mels = []
    for a in audio:
        y = a.astype(np.float32) / 32768.0
        rep = librosa.feature.melspectrogram(y=y, sr=16000, hop_length=256, n_fft=512, n_mels=96,
                                             pad_mode="reflect").T
        mels.append(np.log10(10000 * rep.astype(np.float32) + 1).astype(np.float32))
    mel = np.stack(mels)
    assert mel.shape[1:] == (187, 96), mel.shape

    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, *_, penultimate = models.define_model(x, is_training, "MSD_musicnn", 50)
        taggram = tf.nn.sigmoid(y)
    sess = tf.compat.v1.Session()
    tf.compat.v1.train.Saver().restore(sess, os.path.join(tmp, "musicnn", "MSD_musicnn") + "/")
    tags, pen = sess.run([taggram, penultimate], feed_dict={x: mel, is_training: False})
    out = REPO / "tests" / "resources" / "musicnn_parity.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    np.savez_compressed(out, audio=audio, mel=mel, taggram=tags.astype(np.float32),
                        penultimate=pen.astype(np.float32), wheel_sha256=np.array(sha),
                        made_with=np.array(f"tensorflow {tf.__version__}, librosa {librosa.__version__}, "
                                           f"numpy {np.__version__}; benchmarks/musicnn_reference.py"))
    print(f"wrote {out} ({out.stat().st_size} bytes); taggram {tags.shape}, penultimate {pen.shape}")


if __name__ == "__main__":
    main(sys.argv[1])
