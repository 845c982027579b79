#!/usr/bin/env bash
# One prepared GPU session (the `device` tool's machine, or any CUDA host): CUDA tests, music2emo inference and
# the realtime sidecar on the GPU. Prints everything and keeps a log in $OUT (or ./gpu-check-out).
#   bash benchmarks/gpu_check.sh            # needs the package's deps; on the device machine .whl/ carries them
set -uo pipefail
OUT=${OUT:-gpu-check-out}; mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .whl ]; then   # the device machine: no registry, dependencies travel as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
  export PYTHONPATH=/tmp/site
fi
step() { local t=$1; shift; echo; echo "=== $* (limit ${t}s) ==="; local s=$SECONDS; timeout "$t" "$@"; echo "=== rc $? in $((SECONDS - s)) s"; }
nvidia-smi -L; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
step 120 python3 -m pytest -q -p no:cacheprovider -o addopts= tests/test_harmony_btc.py tests/test_music2emo_head.py -k cuda
step 60 python3 -m m2e_plugin predict --demo --device cuda
step 150 python3 benchmarks/bench_music2emo.py --durations 30 180 --device cuda --chords offline --mert-layers
step 240 python3 benchmarks/bench_realtime.py --models music2emo --devices cuda --batches 1,4 --hops 0.25,0.5 --seconds 20
step 90 python3 benchmarks/bench_realtime.py --models lite --devices cuda,cpu --hops 0.5 --seconds 20
