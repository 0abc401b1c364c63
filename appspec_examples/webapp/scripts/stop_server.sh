#!/bin/bash
# ApplicationStop: stop the server that start_server.sh started. Succeeds when it is not running.
# berth runs this script from the revision installed last time.
set -euo pipefail
APP_DIR=/opt/berth-examples/webapp
VERSION=$(cat "$(dirname "$0")/../VERSION" 2>/dev/null || echo unknown)
echo "ApplicationStop from revision $VERSION"

PIDFILE="$APP_DIR/server.pid"
if [ ! -f "$PIDFILE" ]; then
    echo "no pidfile: the server is not running"
    exit 0
fi
PID=$(cat "$PIDFILE")
# Only stop the process if it really is our server (the PID may have been reused since).
if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null && grep -qa "server.py" "/proc/$PID/cmdline"; then
    kill "$PID"
    for _ in $(seq 1 100); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        echo "server $PID ignored SIGTERM for 10 s; killing it"
        kill -9 "$PID" || true
    fi
    echo "stopped server $PID"
else
    echo "server is not running"
fi
rm -f "$PIDFILE"
