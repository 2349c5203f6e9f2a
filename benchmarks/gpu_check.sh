#!/usr/bin/env bash
# The GPU checks, as one prepared run on a CUDA machine (issue 3; DESIGN §3):
#   tests    the CUDA tests (sparse engine == masked dense on the GPU, Predictor GPU == CPU) and the
#            stream node and controller tests, which run on the GPU there (device auto)
#   cli      `dyna-stream predict` and `dyna-stream profile` on the GPU, both engines
#   speedup  benchmarks/sparse_speedup.py on the GPU for each engine strategy (auto with the compiled
#            dense baseline, CUDA graphs), with an operator profile of the sd=sw=0.7 step
#   training the GPU training tests (both loops, validation, calibration, against the CPU run), then
#            benchmarks/training_efficiency.py on radar-fmi patches on the GPU, seed after seed until
#            TRAIN_SECONDS (default 420) run out (every finished seed is written to OUTDIR); the data
#            from DATA_ROOT (default ../shared/data), TRAIN_DEVICE (cuda), TRAIN_EPOCHS (12) and FIRST_SEED (0) may be set
#   efficiency the benchmark of the training stage alone; TRAIN_VARIANTS (default: off st-prune
#            static-random infobatch) picks the variants
#   graphs   issue 19: the static-shape / CUDA-graph / block tests on the GPU, then
#            benchmarks/execution_strategies.py on the GPU at the bundled grid and at the full 1 km
#            FMI grid (needs DATA_ROOT/radar_fmi/20170509, default ../shared/data: carry it to the GPU
#            machine), JSON to OUTDIR/execution_strategies_cuda.json
# Usage: bash benchmarks/gpu_check.sh OUTDIR [tests] [cli] [speedup] [training] [efficiency] [graphs]
#        (default: tests cli speedup)
# Missing pure-Python dependencies may sit as wheels in .whl/ (installed to /tmp/site).
set -u
out=${1:-${OUT:-runs/gpu_check}}
shift || true
stages=${*:-tests cli speedup}
train_seconds=${TRAIN_SECONDS:-420} train_device=${TRAIN_DEVICE:-cuda} train_epochs=${TRAIN_EPOCHS:-12}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
if [[ " $stages " == *" tests "* ]]; then
    timeout 300 python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu or predictor or stream or control_node" \
        tests/test_sparse.py tests/test_static_shapes.py tests/test_predictor.py tests/test_stream.py \
        tests/test_control_node.py 2>&1 \
        | tee "$out/pytest.txt" | tail -15
fi
if [[ " $stages " == *" cli "* ]]; then
    python3 -m dyna_stream.cli predict --device cuda --out "$out/predict" 2>&1 | tail -3
    for engine in masked sparse; do
        python3 -m dyna_stream.cli profile --device cuda --engine "$engine" --runs 30 --cache-dir "/tmp/profile-$engine" \
            2>&1 | tee "$out/profile_cuda_$engine.txt" | tail -9
    done
fi
if [[ " $stages " == *" speedup "* ]]; then
    for strategy in auto canvas windows; do
        extra=(--no-compile)
        [ "$strategy" = auto ] && extra=(--profile "$out/profile_cuda_0.7.txt")
        timeout 240 python3 benchmarks/sparse_speedup.py --device cuda --runs 50 --strategy "$strategy" "${extra[@]}" \
            --json "$out/sparse_speedup_cuda_$strategy.json" 2>&1 | tee "$out/sparse_speedup_cuda_$strategy.txt"
    done
fi
if [[ " $stages " == *" graphs "* ]]; then
    timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_static_shapes.py 2>&1 \
        | tee "$out/pytest_graphs.txt" | tail -5
    timeout 400 python3 benchmarks/execution_strategies.py --device cuda --runs 50 \
        ${DATA_ROOT:+--data-root "$DATA_ROOT"} --json "$out/execution_strategies_cuda.json" 2>&1 \
        | grep -v USDT | tee "$out/execution_strategies_cuda.txt"
fi
if [[ " $stages " == *" training "* ]]; then
    timeout 150 python3 -m pytest -q -p no:cacheprovider -k "gpu" tests/test_training.py 2>&1 \
        | tee "$out/pytest_training.txt" | tail -5
fi
if [[ " $stages " == *" training "* || " $stages " == *" efficiency "* ]]; then
    # shellcheck disable=SC2086
    timeout "$train_seconds" python3 benchmarks/training_efficiency.py --datasets radar-fmi --seeds 10 \
        --first-seed "${FIRST_SEED:-0}" \
        --variants ${TRAIN_VARIANTS:-off st-prune static-random infobatch} --epochs "radar-fmi=$train_epochs" \
        --set "train.device=$train_device" ${DATA_ROOT:+--data-root "$DATA_ROOT"} \
        --out "$out/training_efficiency_radar_patches_gpu" 2>&1 \
        | tee "$out/training_efficiency.txt" | grep -v Warning
fi
