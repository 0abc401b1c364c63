#!/bin/bash
# ApplicationStart: start the server in the background and remember its PID.
set -euo pipefail
APP_DIR=/opt/berth-examples/webapp
VERSION=$(cat "$(dirname "$0")/../VERSION" 2>/dev/null || echo unknown)
echo "ApplicationStart from revision $VERSION"

cd "$APP_DIR"
# The server's output goes to a log file. (berth would not hang even if the server kept this script's
# stdout open, but the CodeDeploy agent would, so the example stays portable.)
nohup python3 "$APP_DIR/server.py" >>"$APP_DIR/server.log" 2>&1 &
echo $! >"$APP_DIR/server.pid"
echo "started server $! on port ${WEBAPP_PORT:-8080}"
