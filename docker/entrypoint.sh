#!/bin/sh
# The image's entry point: prepare DATA_DIR on first boot as `make run` does (migrate, the
# settings row, the first admin password in $DATA_DIR/first-run.txt, a generated SECRET_KEY
# unless one is given), then run the command:
#   serve      the gateway: manage.py serve on $HOST:$PORT (the default)
#   run_jobs   the background jobs (compose runs them as a service of their own)
#   anything else is a manage.py command, e.g. `export_kiro --output /data/export`.
# KIRO_SKIP_BOOTSTRAP=1 skips the preparation (a replica started after the first one did it).
set -eu

cd "$(dirname "$0")/.."
umask 077
: "${DATA_DIR:=/data}"
export DATA_DIR
mkdir -p "$DATA_DIR"

PYTHON="${PYTHON:-python}"

if [ "${KIRO_SKIP_BOOTSTRAP:-0}" != "1" ]; then
    "$PYTHON" manage.py bootstrap
fi

command="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$command" in
    serve)
        exec "$PYTHON" manage.py serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8990}" "$@"
        ;;
    *)
        exec "$PYTHON" manage.py "$command" "$@"
        ;;
esac
