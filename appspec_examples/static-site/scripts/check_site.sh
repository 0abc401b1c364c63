#!/bin/bash
# ValidateService: the pages are installed with the modes the appspec's permissions ask for.
set -euo pipefail
SITE=/opt/berth-examples/static-site/public
echo "ValidateService: checking $SITE"
fail=0
expect() {  # expect PATH MODE
    local actual
    actual=$(stat -c '%a' "$1")
    if [ "$actual" != "$2" ]; then
        echo "$1 has mode $actual, expected $2" >&2
        fail=1
    fi
}
expect "$SITE/css" 755
expect "$SITE/index.html" 644
expect "$SITE/draft-news.html" 600
expect "$SITE/css/site.css" 644
expect "$SITE/downloads/example.txt" 444
expect "$SITE/robots.txt" 644
exit "$fail"
