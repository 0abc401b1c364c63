#!/usr/bin/env bash
# `make demo`: a real deployment on the embedded default (the spool channel), no root, nothing left running.
# 1. start the agent in the background with its state under ./.demo/
# 2. deploy the example web app (revision 1), follow it live, fetch its health page
# 3. deploy revision 2: ApplicationStop runs revision 1's stop script
# 4. stop the app and the agent
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=${BERTH:-.venv/bin/berth}
PY=${PY:-.venv/bin/python}
DEMO=$PWD/.demo
APP=$DEMO/webapp

cleanup() {
  [ -x "$APP/scripts/stop_server.sh" ] && "$APP/scripts/stop_server.sh" >/dev/null 2>&1 || true
  if [ -n "${AGENT_PID:-}" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# A fresh demo folder each run, so a second run shows the same thing.
[ -x "$APP/scripts/stop_server.sh" ] && "$APP/scripts/stop_server.sh" >/dev/null 2>&1 || true
rm -rf "$DEMO"
mkdir -p "$DEMO"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export WEBAPP_PORT=$PORT

# Two revisions of appspec_examples/webapp, installed under .demo/webapp instead of /opt (no root needed).
for v in 1 2; do
  cp -a appspec_examples/webapp "$DEMO/revision-$v"
  grep -rl /opt/berth-examples/webapp "$DEMO/revision-$v" | xargs sed -i "s#/opt/berth-examples/webapp#$APP#g"
  echo "$v" > "$DEMO/revision-$v/VERSION"
done

cat > "$DEMO/agent.yml" <<YAML
root: $DEMO/state
log_dir: $DEMO/log
poll_interval: 0.5
instance_id: demo-host
YAML

echo "== starting the agent (spool channel, state in .demo/state)"
$BERTH agent run --config "$DEMO/agent.yml" >"$DEMO/agent.out" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do [ -f "$DEMO/state/status.json" ] && break; sleep 0.1; done
$BERTH agent status --config "$DEMO/agent.yml" | sed -n 1p

deploy() {
  local rev=$1
  echo
  echo "== deploying revision $rev"
  local id
  id=$($BERTH command send --spool "$DEMO/state/spool" --bundle "$DEMO/revision-$rev" \
        --application webapp --deployment-group demo)
  $BERTH command wait "$id" --spool "$DEMO/state/spool" --timeout 60
  DEPLOYMENT_ID=$id
}

deploy 1
echo
echo "== GET http://127.0.0.1:$PORT/health"
$PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=5).read().decode())"

deploy 2
echo
echo "== ApplicationStop of the second deployment ran the first revision's script:"
grep -h "ApplicationStop from revision" "$DEMO/state/groups/webapp/demo/deployments/$DEPLOYMENT_ID/logs/scripts.log" \
  | sed 's/^.*\[stdout\]/  /'
echo "== GET http://127.0.0.1:$PORT/health"
$PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=5).read().decode())"

echo
echo "== stopping the app and the agent"
"$APP/scripts/stop_server.sh" >/dev/null
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || true
AGENT_PID=
echo "done: nothing left running (state and logs are in .demo/)"
