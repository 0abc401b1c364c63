#!/usr/bin/env bash
# `make demo-aws`: the agent on its SQS channel against a local moto server. No AWS account is used, and nothing
# is left running afterwards (moto, the agent and the example web app are stopped on exit, also on errors/Ctrl-C).
#
#  1. start moto_server on a free 127.0.0.1 port; create a versioned bucket and a queue with a dead-letter queue
#  2. upload appspec_examples/webapp as a revision, its install folder moved under ./.demo-aws/
#  3. run `berth agent run` in the background on the SQS channel (reports and heartbeats in S3, logs in CloudWatch)
#  4. `berth command send --sqs ... --revision s3://...`, then `berth command wait`
#  5. show the report and the heartbeat from S3, the script output from CloudWatch Logs, and ask the web app
# Everything the demo writes stays in ./.demo-aws/ for a look afterwards (removed at the next run).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEMO="$PWD/.demo-aws"
BUCKET=demo-releases
INSTANCE=demo-host
LOG_GROUP=berth-demo

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

MOTO_PID=""
AGENT_PID=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -f "$DEMO/webapp/server.pid" ]; then
        kill "$(cat "$DEMO/webapp/server.pid")" 2>/dev/null || true
    fi
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$AGENT_PID" 2>/dev/null || true
    fi
    if [ -n "$MOTO_PID" ]; then
        kill -TERM "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ]; then
        echo "demo-aws failed (exit $status); logs: $DEMO/agent.out, $DEMO/log/agent.log, $DEMO/moto.log" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

rm -rf "$DEMO"
mkdir -p "$DEMO"
# Only the dummy credentials of the local server; never a profile, a proxy or instance metadata.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL HTTP_PROXY HTTPS_PROXY http_proxy https_proxy
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
MOTO_PORT=$(free_port)
WEBAPP_PORT=$(free_port)
EP="http://127.0.0.1:$MOTO_PORT"

say "starting moto_server on $EP"
"$PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$DEMO/moto.log" 2>&1 &
MOTO_PID=$!
"$PY" - "$EP" <<'PY'
import sys, time, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + 60
while True:
    try:
        opener.open(sys.argv[1] + "/moto-api/", timeout=2).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("moto_server did not start")
        time.sleep(0.2)
PY

say "bucket s3://$BUCKET (versioned), queue berth-demo with a dead-letter queue, the webapp revision"
cp -r appspec_examples/webapp "$DEMO/revision"
grep -rl /opt/berth-examples/webapp "$DEMO/revision" | xargs sed -i "s#/opt/berth-examples/webapp#$DEMO/webapp#g"
tar -czf "$DEMO/webapp.tgz" -C "$DEMO/revision" .
QUEUE=$("$PY" - "$EP" "$BUCKET" "$DEMO/webapp.tgz" <<'PY'
import json, sys
import boto3
ep, bucket, bundle = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=ep)
sqs = boto3.client("sqs", endpoint_url=ep)
s3.create_bucket(Bucket=bucket)
s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
s3.upload_file(bundle, bucket, "webapp/webapp.tgz")
dlq = sqs.create_queue(QueueName="berth-demo-dlq")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
# The redrive policy docs/protocol.md recommends: refused commands end in the dead-letter queue.
redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
print(sqs.create_queue(QueueName="berth-demo", Attributes={"RedrivePolicy": redrive})["QueueUrl"])
PY
)
echo "queue: $QUEUE"

cat >"$DEMO/agent.yml" <<EOF
root: $DEMO/state
log_dir: $DEMO/log
instance_id: $INSTANCE
heartbeat_interval: 5
channel:
  kind: sqs
  queue_url: $QUEUE
aws:
  region: us-east-1
  endpoints: {s3: "$EP", sqs: "$EP", logs: "$EP"}
  reports_bucket: $BUCKET
  reports_prefix: berth
  cloudwatch: true
  log_group: $LOG_GROUP
EOF

say "starting the agent on the SQS channel (config: $DEMO/agent.yml)"
WEBAPP_PORT=$WEBAPP_PORT "$PY" -m agent agent run --config "$DEMO/agent.yml" >"$DEMO/agent.out" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 100); do [ -f "$DEMO/state/status.json" ] && break; sleep 0.2; done
kill -0 "$AGENT_PID" 2>/dev/null || { cat "$DEMO/agent.out"; exit 1; }

say "berth command send --sqs ... --revision s3://$BUCKET/webapp/webapp.tgz"
DEP=$("$PY" -m agent command send --sqs "$QUEUE" --revision "s3://$BUCKET/webapp/webapp.tgz" \
      --application webapp --deployment-group demo --endpoint-url "$EP")
echo "deployment: $DEP"

say "berth command wait $DEP (reads the report from S3)"
"$PY" -m agent command wait "$DEP" --sqs "$QUEUE" --instance "$INSTANCE" --reports "s3://$BUCKET/berth" \
    --endpoint-url "$EP" --timeout 120

say "what is in S3 and CloudWatch Logs"
"$PY" - "$EP" "$BUCKET" "$DEP" "$INSTANCE" "$LOG_GROUP" <<'PY'
import json, sys, time
import boto3
ep, bucket, dep, instance, group = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=ep)
logs = boto3.client("logs", endpoint_url=ep)
key = f"berth/deployments/{dep}/instances/{instance}.json"
report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
print(f"s3://{bucket}/{key}: status {report['status']}, events:")
for event in report["events"]:
    print(f"  {event['name']:<20} {event['status']}")
beat = json.loads(s3.get_object(Bucket=bucket, Key=f"berth/agents/{instance}.json")["Body"].read())
print(f"s3://{bucket}/berth/agents/{instance}.json: state {beat['state']}, version {beat['agent_version']}, "
      f"last poll {beat['last_poll_at']}, free disk {beat['free_disk_bytes'] // 2**20} MiB")
stream = f"demo/{dep}/{instance}"
deadline = time.monotonic() + 15
lines = []
while not lines and time.monotonic() < deadline:
    try:
        lines = [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=stream,
                                                           startFromHead=True)["events"]]
    except logs.exceptions.ResourceNotFoundException:
        pass
    time.sleep(0.5)
print(f"CloudWatch Logs {group} / {stream}: {len(lines)} line(s)")
for line in lines:
    print(f"  {line}")
PY

say "the web app answers on 127.0.0.1:$WEBAPP_PORT"
"$PY" -c 'import sys, urllib.request; print(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$WEBAPP_PORT/health"

say "stopping the web app, the agent and moto"
