#!/bin/bash
# BeforeInstall: runs from the new revision before its files are put in place.
set -euo pipefail
APP_DIR=/opt/berth-examples/webapp
VERSION=$(cat "$(dirname "$0")/../VERSION" 2>/dev/null || echo unknown)
echo "BeforeInstall from revision $VERSION"
if ! command -v python3 >/dev/null; then
    echo "python3 is needed to run the web app" >&2
    exit 1
fi
echo "installing into $APP_DIR"
