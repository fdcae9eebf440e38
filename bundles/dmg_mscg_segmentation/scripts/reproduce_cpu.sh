#!/usr/bin/env bash
# Reproduce the shipped CPU-width weights and the results tables of this bundle.
#
#   bash scripts/reproduce_cpu.sh data                 # randomised training cohort, held-out style, in-distribution
#                                                      # check cohort and the classic center_c cohort
#   bash scripts/reproduce_cpu.sh train t2 [VARIANT]    # all 200 training patients, model selection on the held-out
#                                                      # style (30 patients whose ranges lie outside the training ones)
#   bash scripts/reproduce_cpu.sh finetune t2 WEIGHTS  # the shipped 0.4.0 T2/FLAIR: WEIGHTS (the 0.2.0 model, e.g.
#                                                      # `git show eeb2c04:bundles/.../models/model_t2.pt`) fine-tuned
#                                                      # 3 epochs, lr 1e-4, on training patients 90-159
#   bash scripts/reproduce_cpu.sh transfer t1c t2_MSCG-Dis [VARIANT]  # train t1c from another run's best weights
#   bash scripts/reproduce_cpu.sh ship t2 [RUN]         # best-validation weights of RUNS/RUN -> models/, exports
#   bash scripts/reproduce_cpu.sh evaluate t2 [VARIANT] [RUN]  # dmg segment + dmg evaluate: held-out style,
#                                                      # in-distribution check cohort, center_c
#
# Run from the bundle folder. DATA (default ../../data) and RUNS (default ../../runs) may be set.
# Each training run uses one thread (OMP_NUM_THREADS=1), so two runs share a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../../data}
RUNS=${RUNS:-../../runs}
# the shipped width and schedule (the paper's is features 32..512, 240x240, lr 1e-4, 500 epochs, on a GPU)
WIDTH=(--features "[8,16,32,64,128]" --disc_channels "[16,32,64,128]" --spatial_size 160)
SCHEDULE=(--k 0.05 --learning_rate 0.0003 --num_epochs ${EPOCHS:-14} --val_interval 1 --batch_size 4 --num_workers 0
          --seed 0 --split_seed 0)

case "${1:?phase: data, train, transfer, ship or evaluate}" in
data)
    dmg synth --out "$DATA/train" --patients 200 --centers site_1,site_2,site_3,site_4 --seed 11 \
        --style randomised --skull-stripped-fraction 0.25
    dmg synth --out "$DATA/heldout" --patients 30 --centers heldout_a,heldout_b --seed 12 \
        --style heldout --skull-stripped-fraction 0.3
    dmg synth --out "$DATA/indist" --patients 20 --centers site_1,site_2 --seed 14 \
        --style randomised --skull-stripped-fraction 0.25
    dmg synth --out "$DATA/center_c" --patients 20 --centers center_c --seed 2 --style classic
    ;;
train)
    seq=${2:?sequence}; variant=${3:-MSCG}
    OMP_NUM_THREADS=1 python -m monai.bundle run --config_file configs/train.json --bundle_root . \
        --dataset_dir "$DATA/train" --sequence "$seq" --variant "$variant" --fold -1 \
        --validation_dir "$DATA/heldout" --output_dir "$RUNS/${seq}_${variant}" "${WIDTH[@]}" "${SCHEDULE[@]}"
    ;;
finetune)
    seq=${2:?sequence}; weights=${3:?weights to start from}
    python - "$DATA/train" <<'PY'
import sys
import pandas as pd
manifest = pd.read_csv(f"{sys.argv[1]}/manifest.csv", dtype=str, keep_default_na=False)
manifest.iloc[90:160].to_csv(f"{sys.argv[1]}/subset70b.csv", index=False)
PY
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python -m monai.bundle run --config_file configs/train.json \
        --bundle_root . --dataset_dir "$DATA/train/subset70b.csv" --sequence "$seq" --variant MSCG-Dis --fold -1 \
        --validation_dir "$DATA/heldout" --output_dir "$RUNS/${seq}_ft" --pretrained_ckpt "$weights" \
        "${WIDTH[@]}" --k 0.05 --learning_rate 0.0001 --num_epochs 3 --val_interval 1 --batch_size 4 \
        --num_workers 0 --seed 0 --split_seed 0
    ;;
transfer)
    seq=${2:?sequence}; src=${3:?source run, e.g. t2_MSCG-Dis}; variant=${4:-MSCG-Dis}
    OMP_NUM_THREADS=1 python -m monai.bundle run --config_file configs/train.json --bundle_root . \
        --dataset_dir "$DATA/train" --sequence "$seq" --variant "$variant" --fold -1 \
        --validation_dir "$DATA/heldout" --output_dir "$RUNS/${seq}_${variant}_from_${src}" \
        --pretrained_ckpt "$RUNS/$src/model.pt" "${WIDTH[@]}" "${SCHEDULE[@]}"
    ;;
ship)
    seq=${2:?sequence}; run=${3:-${seq}_MSCG}
    cp "$RUNS/$run/model.pt" "models/model_${seq}.pt"
    dmg bundle ship .  # TorchScript + ONNX exports, models/model.pt, carried scripts/ (all sequences)
    ;;
evaluate)
    # dmg segment + dmg evaluate of one run on the held-out style, the in-distribution check cohort and center_c
    seq=${2:?sequence}; variant=${3:-MSCG}; run="$RUNS/${4:-${seq}_${variant}}"
    for cohort in heldout indist center_c; do
        dmg segment --bundle . --cohort "$DATA/$cohort/manifest.csv" --sequence "$seq" --model "$run/model.pt" \
            --set variant="$variant" --out "$run/${cohort}_pred"
        dmg evaluate --pred "$run/${cohort}_pred" --cohort "$DATA/$cohort/manifest.csv" --sequence "$seq" \
            --out "$run/${cohort}_report"
    done
    ;;
*)
    echo "unknown phase $1" >&2; exit 2
    ;;
esac
