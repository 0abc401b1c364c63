#!/bin/bash
# ApplicationStart: the new files are installed; a real app would (re)start its service here.
set -euo pipefail
APP_DIR=/opt/berth-examples/traffic-hooks
STATE="$APP_DIR/state"
VERSION=$(cat "$(dirname "$0")/../app/VERSION" 2>/dev/null || echo unknown)
echo "ApplicationStart from revision $VERSION"
test -f "$APP_DIR/app/index.html"
