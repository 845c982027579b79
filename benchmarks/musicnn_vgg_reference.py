"""OPTIONAL: the ORIGINAL musicnn MSD_vgg graph (TensorFlow) on stored log-mel patches, to check
`benchmarks/musicnn_vgg.py`'s port. Run in a scratch environment (see `benchmarks/musicnn_reference.py`)::

    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python benchmarks/musicnn_vgg_reference.py WHEEL MELS.npz OUT.npz

MELS.npz is written by ``musicnn_vgg.py mels`` (the port's own front end, so the check isolates the network).
The wheel's ``models.define_model(..., "MSD_vgg", 50)`` is restored from its checkpoint with TF's Saver; stored:
the taggram (sigmoid) and the flattened pool5 (the port's ``embedding``).
"""

import os
import sys
import tempfile
import zipfile

import numpy as np


def main(wheel: str, mels: str, out: str) -> None:
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tmp = tempfile.mkdtemp()
    zipfile.ZipFile(wheel).extractall(tmp)
    sys.path.insert(0, tmp)
    from musicnn import models

    mel = np.load(mels)["mel"].astype(np.float32)
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, _, _, _, _, pool5 = models.define_model(x, is_training, "MSD_vgg", 50)
        taggram = tf.nn.sigmoid(y)
        embedding = tf.compat.v1.layers.flatten(pool5)
    sess = tf.compat.v1.Session()
    tf.compat.v1.train.Saver().restore(sess, os.path.join(tmp, "musicnn", "MSD_vgg") + "/")
    tags, emb = sess.run([taggram, embedding], feed_dict={x: mel, is_training: False})
    np.savez(out, taggram=tags.astype(np.float32), embedding=emb.astype(np.float32),
             made_with=np.array(f"tensorflow {tf.__version__}; benchmarks/musicnn_vgg_reference.py"))
    print(f"wrote {out}: taggram {tags.shape}, embedding {emb.shape}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
