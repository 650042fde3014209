#!/usr/bin/env bash
# The light networks (decoder widths 128-64-32, 1x1 convolutions before PixelShuffle; issues 10 and
# 11) trained on a lent GPU machine in one device command, each run under a wall-clock limit, the
# best epochs exported as fp16 into OUT with their logs (at most 8 files come back).
#
#   1. the mask generator, started from the shipped one's encoder;
#   2. SMFD-UNet from the shipped encoders, on its soft masks (half the CelebAMask-HQ faces with
#      ground-truth masks, FFHQ always generated), with the semantic-consistency term;
#   3. the same without the term, to compare with (identity is measured back here: no dlib there).
#
# Data: .venv/bin/python scripts/pack_for_device.py (writes .device/data; carry ".device").
# On the device:  PYTHONUNBUFFERED=1 bash scripts/device_train_light.sh $OUT 150 140   (about 8 minutes)
# Rehearsal here: SMFD_DEVICE=cpu SAMPLES=32 VAL=4 WORKERS=1 bash scripts/device_train_light.sh /tmp/o 60 60
set -u
OUT=${1:?usage: device_train_light.sh OUT [MASK_SECONDS DEBLUR_SECONDS]}
MASK_S=${2:-150}
DEBLUR_S=${3:-140}
DEVICE=${SMFD_DEVICE:-cuda}
SAMPLES=${SAMPLES:-2048}  # samples between two validations (and checkpoints)
VAL=${VAL:-80}
WORKERS=${WORKERS:-15}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
DATA=.device/data
RUNS=${RUNS:-/tmp/smfd-runs}
[ -d "$DATA/celebamask_mini" ] || { echo "no $DATA/celebamask_mini: run scripts/pack_for_device.py and carry .device" >&2; exit 2; }
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LIGHT=(--set 'decoder=[128,64,32]' --set shuffle_kernel=1)
COMMON=(--device "$DEVICE" --workers "$WORKERS" --samples-per-epoch "$SAMPLES" --val-faces "$VAL" --epochs 1000)
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader

train() {  # seconds name args...: one run under a wall-clock limit; its last finished epoch counts
  local seconds=$1 name=$2
  shift 2
  echo "== $name (${seconds} s) $(date +%T)"
  timeout --signal=INT --kill-after=30 "$seconds" $PY -m smfd train "$@" --out "$RUNS/$name" "${COMMON[@]}"
  [ -f "$RUNS/$name/best.safetensors" ] || { echo "$name: no finished epoch in ${seconds} s" >&2; return 1; }
  $PY scripts/export_weights.py "$RUNS/$name/best.safetensors" "$OUT/$name.safetensors"
  cp "$RUNS/$name/log.csv" "$OUT/$name.csv"
}

train "$MASK_S" mask_light mask "$DATA/celebamask_mini" --init smfd/weights/mask_generator.safetensors \
  --init-partial "${LIGHT[@]}" --loss dice+ce || exit 1
DEBLUR=(deblur "$DATA/celebamask_mini" "$DATA/ffhq_mini" --init smfd/weights/smfd_unet.safetensors --init-partial
        "${LIGHT[@]}" --mask-source mix --mask-model "$RUNS/mask_light/best.safetensors" --patch 128
        --loss l1+ssim --set residual=true --set match_input_mean=true --set soft_mask=true)
train "$DEBLUR_S" smfd_light_semantic "${DEBLUR[@]}" --semantic 0.1
train "$DEBLUR_S" smfd_light_plain "${DEBLUR[@]}"
ls -l "$OUT"
