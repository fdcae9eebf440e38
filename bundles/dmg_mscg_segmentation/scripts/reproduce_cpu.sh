#!/usr/bin/env bash
# Reproduce the shipped CPU-width weights, the results table and the T2 ablation of this bundle.
#
#   bash scripts/reproduce_cpu.sh data                 # training cohort (center_a + center_b) and held-out center_c
#   bash scripts/reproduce_cpu.sh train t2 [VARIANT]    # one run: fold 0 of 5 (48 training / 12 validation patients)
#   bash scripts/reproduce_cpu.sh transfer t1c t2_MSCG-Dis [VARIANT]  # train t1c from another run's best weights
#   bash scripts/reproduce_cpu.sh ship t2 [RUN]         # best-validation weights of RUNS/RUN -> models/, exports
#   bash scripts/reproduce_cpu.sh evaluate t2 [VARIANT] [RUN]  # dmg segment + dmg evaluate, validation + held-out
#
# Run from the bundle folder. DATA (default ../../data) and RUNS (default ../../runs) may be set.
# Each training run uses one thread (OMP_NUM_THREADS=1), so two runs share a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../../data}
RUNS=${RUNS:-../../runs}
# the shipped width and schedule (the paper's is features 32..512, 240x240, lr 1e-4, 500 epochs, on a GPU)
WIDTH=(--features "[8,16,32,64,128]" --disc_channels "[16,32,64,128]" --spatial_size 160)
SCHEDULE=(--k 0.05 --learning_rate 0.0003 --num_epochs 10 --val_interval 1 --batch_size 2 --num_workers 1 --seed 0 --split_seed 0)

case "${1:?phase: data, train, transfer, ship or evaluate}" in
data)
    dmg synth --out "$DATA/train" --patients 60 --centers center_a,center_b --seed 1
    dmg synth --out "$DATA/heldout" --patients 20 --centers center_c --seed 2
    ;;
train)
    seq=${2:?sequence}; variant=${3:-MSCG}
    OMP_NUM_THREADS=1 python -m monai.bundle run --config_file configs/train.json --bundle_root . \
        --dataset_dir "$DATA/train" --sequence "$seq" --variant "$variant" --fold 0 \
        --output_dir "$RUNS/${seq}_${variant}" "${WIDTH[@]}" "${SCHEDULE[@]}"
    ;;
transfer)
    seq=${2:?sequence}; src=${3:?source run, e.g. t2_MSCG-Dis}; variant=${4:-MSCG-Dis}
    OMP_NUM_THREADS=1 python -m monai.bundle run --config_file configs/train.json --bundle_root . \
        --dataset_dir "$DATA/train" --sequence "$seq" --variant "$variant" --fold 0 \
        --output_dir "$RUNS/${seq}_${variant}_from_${src}" --pretrained_ckpt "$RUNS/$src/model.pt" \
        "${WIDTH[@]}" "${SCHEDULE[@]}"
    ;;
ship)
    seq=${2:?sequence}; run=${3:-${seq}_MSCG}
    cp "$RUNS/$run/model.pt" "models/model_${seq}.pt"
    dmg bundle ship .  # TorchScript + ONNX exports, models/model.pt, carried scripts/ (all sequences)
    ;;
evaluate)
    seq=${2:?sequence}; variant=${3:-MSCG}; run="$RUNS/${4:-${seq}_${variant}}"
    dmg segment --bundle . --cohort "$DATA/heldout/manifest.csv" --sequence "$seq" --model "$run/model.pt" \
        --set variant="$variant" --out "$run/heldout_pred"
    dmg evaluate --pred "$run/heldout_pred" --cohort "$DATA/heldout/manifest.csv" --sequence "$seq" \
        --out "$run/heldout_report"
    python - "$DATA/train" "$seq" <<'PY'
import sys
import pandas as pd
from pipeline.data.datalists import segmentation_datalists
root, seq = sys.argv[1:]
ids = {d["patient_id"] for d in segmentation_datalists(root, seq, 0, 5, 0)["validate"]}
manifest = pd.read_csv(f"{root}/manifest.csv", dtype=str, keep_default_na=False)
manifest[manifest.patient_id.isin(ids)].to_csv(f"{root}/validation_fold0.csv", index=False)
PY
    dmg segment --bundle . --cohort "$DATA/train/validation_fold0.csv" --sequence "$seq" --model "$run/model.pt" \
        --set variant="$variant" --out "$run/validation_pred"
    dmg evaluate --pred "$run/validation_pred" --cohort "$DATA/train/validation_fold0.csv" --sequence "$seq" \
        --out "$run/validation_report"
    ;;
*)
    echo "unknown phase $1" >&2; exit 2
    ;;
esac
