#!/bin/bash
# AfterInstall: the new files are in place; check that the server code at least parses.
set -euo pipefail
APP_DIR=/opt/berth-examples/webapp
VERSION=$(cat "$(dirname "$0")/../VERSION" 2>/dev/null || echo unknown)
echo "AfterInstall from revision $VERSION"
python3 -c 'import ast, sys; ast.parse(open(sys.argv[1], encoding="utf-8").read(), sys.argv[1])' "$APP_DIR/server.py"
