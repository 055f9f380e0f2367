#!/bin/sh
# The container's command, after TF Serving's tf_serving_entrypoint.sh: serve $MODEL_BASE_PATH/$MODEL_NAME
# on all interfaces, port 8501, with the container's arguments added as flags. A --model-config-file
# argument replaces the single model (both together are an error for savedmodel serve).
set -e
case " $* " in
  *" --model-config-file"* | *" --model_config_file"*)
    exec savedmodel serve --host 0.0.0.0 --port 8501 "$@" ;;
esac
exec savedmodel serve --host 0.0.0.0 --port 8501 --model-name "$MODEL_NAME" \
  --model-base-path "$MODEL_BASE_PATH/$MODEL_NAME" "$@"
