#!/usr/bin/env bash
# Serve the tfx-canary serving root with the real tensorflow/serving in Docker.
#
#   serving_configs/docker/run_tf_serving.sh [cpu|gpu] [--print]
#
# SERVING_ROOT   the directory the pipeline pushes into and where models.config is emitted
#                (default: ${TFX_CANARY_HOME:-./.home}/serving)
# TF_SERVING_IMAGE  override the image (default tensorflow/serving:2.21.0, or :2.21.0-gpu for gpu: the
#                release built against the TensorFlow the models are trained with)
# --print        print the exact docker command instead of running it
#
# models.config lists each model's base_path as an absolute host path, so the serving root is mounted
# at the same path inside the container: the emitted config works unchanged on the host and in Docker.
set -euo pipefail

mode=cpu
print_only=false
for arg in "$@"; do
  case "$arg" in
    cpu | gpu) mode="$arg" ;;
    --print) print_only=true ;;
    *) echo "usage: $0 [cpu|gpu] [--print]" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config_dir="$(cd "$here/../tf_serving" && pwd)"
serving_root="${SERVING_ROOT:-${TFX_CANARY_HOME:-$PWD/.home}/serving}"
if [[ ! -f "$serving_root/models.config" ]]; then
  echo "error: no models.config in serving root '$serving_root' (run the pipeline first, or set SERVING_ROOT)" >&2
  exit 1
fi
serving_root="$(cd "$serving_root" && pwd)"

if [[ "$mode" == gpu ]]; then
  image="${TF_SERVING_IMAGE:-tensorflow/serving:2.21.0-gpu}"
  gpu_args=(--gpus all)
else
  image="${TF_SERVING_IMAGE:-tensorflow/serving:2.21.0}"
  gpu_args=()
fi

cmd=(
  docker run --rm --name tfx-canary-serving
  "${gpu_args[@]}"
  -p 8500:8500 -p 8501:8501
  --mount "type=bind,source=$serving_root,target=$serving_root,readonly"
  --mount "type=bind,source=$config_dir,target=/etc/tfx-canary,readonly"
  --entrypoint /usr/bin/tensorflow_model_server
  "$image"
  --port=8500
  --rest_api_port=8501
  --model_config_file="$serving_root/models.config"
  --model_config_file_poll_wait_seconds=5
  --file_system_poll_wait_seconds=1
  --allow_version_labels_for_unavailable_models=true
  --enable_batching=true
  --batching_parameters_file=/etc/tfx-canary/batching_parameters.txt
  --monitoring_config_file=/etc/tfx-canary/monitoring.config
)

if [[ "$print_only" == true ]]; then
  printf '%q ' "${cmd[@]}"
  printf '\n'
else
  exec "${cmd[@]}"
fi
