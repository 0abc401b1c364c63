#!/bin/bash
# BeforeBlockTraffic: the host still serves traffic. Tell health checks to start failing so that
# clients are drained gracefully (a load balancer stops sending new requests).
set -euo pipefail
APP_DIR=/opt/berth-examples/traffic-hooks
STATE="$APP_DIR/state"
VERSION=$(cat "$(dirname "$0")/../app/VERSION" 2>/dev/null || echo unknown)
echo "BeforeBlockTraffic from revision $VERSION"
mkdir -p "$STATE"
date -u +%Y-%m-%dT%H:%M:%SZ >"$STATE/draining"
echo "marked $APP_DIR as draining"
