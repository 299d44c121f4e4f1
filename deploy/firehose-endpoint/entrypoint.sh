#!/bin/sh
# Container entry point: write the configuration ECS put in TRAILRELAY_CONFIG_TOML (from an SSM
# parameter) to a file readable only by us, then run the endpoint with its health port.
# Secrets stay references in that file (access_key = "${FIREHOSE_ACCESS_KEY}"): trailrelay reads
# them from the environment when it starts.
set -eu
config="${TRAILRELAY_CONFIG_FILE:-/tmp/trailrelay.toml}"
if [ -n "${TRAILRELAY_CONFIG_TOML:-}" ]; then
    umask 077
    printf '%s\n' "$TRAILRELAY_CONFIG_TOML" > "$config"
fi
exec trailrelay forward -c "$config" --health "${TRAILRELAY_HEALTH:-0.0.0.0:9090}" --log-format json "$@"
