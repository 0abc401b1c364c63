#!/bin/bash
# BeforeAllowTraffic: last chance to refuse traffic. Warm up and check the new revision.
set -euo pipefail
APP_DIR=/opt/berth-examples/traffic-hooks
STATE="$APP_DIR/state"
VERSION=$(cat "$(dirname "$0")/../app/VERSION" 2>/dev/null || echo unknown)
echo "BeforeAllowTraffic from revision $VERSION"
installed=$(cat "$APP_DIR/app/VERSION")
if [ "$installed" != "$VERSION" ]; then
    echo "installed version is $installed, expected $VERSION" >&2
    exit 1
fi
echo "warm: version $installed is in place"
