#!/usr/bin/env bash
# One-command GPU check (`make test-gpu`): on a CUDA machine, within ~10 minutes,
#   1. the trainer train-step tests on CUDA (nnU-Net enables autocast + GradScaler there),
#   2. short nnUNetv2_train runs of NeurINO-T + TASL and MedNeXt-S on the built-in data set, -device cuda,
#   3. `neurino predict` with the NeurINO run on a test volume,
#   4. the step-time benchmark at 64³ and 128³,
# then one summary (also written to $OUT_DIR/gpu_check_summary.txt). Record the figures in
# docs/devices.md and docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/neurino_gpu_check.XXXX)}
mkdir -p "$OUT_DIR"
export nnUNet_raw=$OUT_DIR/raw nnUNet_preprocessed=$OUT_DIR/preprocessed nnUNet_results=$OUT_DIR/results
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-4} nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-4}
export nnUNet_extTrainer="$("$BIN/neurino" trainer-path):$PWD/tests/nnunet_test_trainers"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
SUMMARY=$OUT_DIR/gpu_check_summary.txt
: > "$SUMMARY"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; nothing to check" | tee -a "$SUMMARY"; exit 2
fi
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)" \
    | tee -a "$SUMMARY"

step() {  # step NAME COMMAND...: run, log to $OUT_DIR/NAME.log, one PASS/FAIL line with its seconds
    local name=$1; shift
    local t0=$SECONDS
    if "$@" > "$OUT_DIR/$name.log" 2>&1; then status=PASS; else status=FAIL; fi
    printf '%-28s %s  %4d s  (%s)\n' "$name" "$status" $((SECONDS - t0)) "$OUT_DIR/$name.log" | tee -a "$SUMMARY"
}

step trainer_tests_cuda env NEURINO_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_trainers.py tests/test_trainers_mednext.py tests/test_trainers_topology.py
step make_dataset "$BIN/neurino" make-dataset -d 990 --n-train 6 --n-test 1 --shape 96 96 96 --force
step plan "$BIN/nnUNetv2_plan_and_preprocess" -d 990 -c 3d_fullres -np 4
step train_neurino_tasl "$BIN/nnUNetv2_train" 990 3d_fullres 0 -tr nnUNetTrainerNeurINO_gpuCheck -device cuda
step train_mednext_s "$BIN/nnUNetv2_train" 990 3d_fullres 0 -tr nnUNetTrainerMedNeXt_S_gpuCheck -device cuda
RUN=$(ls -d "$nnUNet_results"/Dataset990_*/nnUNetTrainerNeurINO_gpuCheck__nnUNetPlans__3d_fullres 2>/dev/null)
TEST_IMAGE=$(ls "$nnUNet_raw"/Dataset990_*/imagesTs/*.nii.gz 2>/dev/null | head -1)
step predict "$BIN/neurino" predict -i "$TEST_IMAGE" -m "$RUN" -f 0 -o "$OUT_DIR/predict" --device cuda
step step_time_64 "$PY" benchmarks/train_step.py --device cuda --patch 64 --batch 2 --repeats 5 --warmup 2
step step_time_128 "$PY" benchmarks/train_step.py --device cuda --patch 128 --batch 2 --repeats 3 --warmup 1 \
    --models nnunet neurino-t mednext-l --losses dcce official

echo "--- step times (last lines of each benchmark log) ---" | tee -a "$SUMMARY"
tail -n 25 "$OUT_DIR/step_time_64.log" "$OUT_DIR/step_time_128.log" | tee -a "$SUMMARY"
grep -h "Pseudo dice\|EMA" "$OUT_DIR"/train_*.log | tail -n 4 | tee -a "$SUMMARY"
echo "summary: $SUMMARY"
! grep -q " FAIL " "$SUMMARY"
