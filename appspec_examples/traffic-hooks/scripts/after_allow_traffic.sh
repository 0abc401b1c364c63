#!/bin/bash
# AfterAllowTraffic: traffic flows again. Clear the draining mark.
set -euo pipefail
APP_DIR=/opt/berth-examples/traffic-hooks
STATE="$APP_DIR/state"
VERSION=$(cat "$(dirname "$0")/../app/VERSION" 2>/dev/null || echo unknown)
echo "AfterAllowTraffic from revision $VERSION"
rm -f "$STATE/draining"
echo "serving"
