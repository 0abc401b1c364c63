#!/bin/bash
# AfterBlockTraffic: no new requests arrive now. Give requests already in flight a moment to finish.
set -euo pipefail
APP_DIR=/opt/berth-examples/traffic-hooks
STATE="$APP_DIR/state"
VERSION=$(cat "$(dirname "$0")/../app/VERSION" 2>/dev/null || echo unknown)
echo "AfterBlockTraffic from revision $VERSION"
sleep "${DRAIN_SECONDS:-1}"
echo "drained"
