#!/bin/bash
# ValidateService: wait up to about 10 s for /health to answer 200 with this revision's version.
set -euo pipefail
VERSION=$(cat "$(dirname "$0")/../VERSION" 2>/dev/null || echo unknown)
echo "ValidateService from revision $VERSION"

exec python3 - "http://127.0.0.1:${WEBAPP_PORT:-8080}/health" "$VERSION" <<'PY'
import json
import sys
import time
import urllib.error
import urllib.request

url, version = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send 127.0.0.1 to a proxy
deadline = time.monotonic() + 10
last = "no answer"
while True:
    try:
        with opener.open(url, timeout=2) as response:
            body = json.loads(response.read().decode("utf-8"))
            if body.get("status") == "ok" and body.get("version") == version:
                print(f"healthy: {url} answered {body}")
                sys.exit(0)
            last = f"answered {body}, expected version {version!r}"
    except urllib.error.HTTPError as exc:
        last = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        last = str(exc)
    if time.monotonic() >= deadline:
        break
    time.sleep(0.5)
print(f"unhealthy: {url}: {last}", file=sys.stderr)
sys.exit(1)
PY
