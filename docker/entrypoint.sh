#!/bin/sh
# Entrypoint of the katib-metrics image: one image, three roles.
#
# Katib's webhooks (ours and Katib's own) give a collector sidecar `args` only, never `command`, and those args
# start with a flag: `-t <trial> -m <metrics> -o-type ... -s-db ... -path ...` (file collector) or the tfevent
# collector's `--trial_name ...`. So arguments starting with "-" run the sidecar, `katib-metrics collect`, and the
# image can stand in for Katib's file-metrics-collector and tfevent-metrics-collector images in katib-config.
# A known subcommand (`injector serve`, `db-manager`, `parse`, ...) or --version/--help runs katib-metrics as is;
# anything else is executed as a command (e.g. `sh`), so debugging the image works as usual.
set -eu

KATIB_METRICS="${KATIB_METRICS:-katib-metrics}"

if [ "$#" -eq 0 ]; then
    exec "$KATIB_METRICS" --help
fi

case "$1" in
    --version | -h | --help | help)
        exec "$KATIB_METRICS" "$@" ;;
    parse | collect | run | db-manager | injector)
        exec "$KATIB_METRICS" "$@" ;;
    -*)
        exec "$KATIB_METRICS" collect "$@" ;;
    *)
        exec "$@" ;;
esac
