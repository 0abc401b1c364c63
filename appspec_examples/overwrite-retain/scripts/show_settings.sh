#!/bin/bash
# AfterInstall: show which settings.ini ended up on the host (the revision's or the one already there).
set -euo pipefail
SETTINGS=/opt/berth-examples/overwrite-retain/config/settings.ini
echo "AfterInstall: $SETTINGS says:"
cat "$SETTINGS"
