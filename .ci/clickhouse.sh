#!/usr/bin/env bash
# Installs (if missing) and starts ClickHouse on 127.0.0.1 (http 8123,
# native 9000) from a private directory. Idempotent: does nothing when a
# server already answers on 8123. Debian's 18.16 is the server available
# here; the same schema runs on modern releases.
#
#   CLICKHOUSE_DIR   private data/config directory (default /var/tmp/opm-clickhouse)
#   CHDB_VENV        virtualenv with PyPI's chdb (modern in-process ClickHouse) for
#                    the schema check against a modern engine (default /var/tmp/opm-chdb-venv)
set -euo pipefail

# Modern engine for opm-store's `modern_clickhouse_gives_the_same_answers`.
CHDB_VENV="${CHDB_VENV:-/var/tmp/opm-chdb-venv}"
if ! "$CHDB_VENV/bin/python" -c 'import chdb' >/dev/null 2>&1; then
    echo "clickhouse: installing chdb into $CHDB_VENV"
    (python3 -m venv "$CHDB_VENV" && "$CHDB_VENV/bin/pip" install -q chdb) \
        || echo "clickhouse: chdb unavailable; the modern-engine check will be skipped" >&2
fi

DIR="${CLICKHOUSE_DIR:-/var/tmp/opm-clickhouse}"
PING='http://127.0.0.1:8123/?query=SELECT%201'

if curl -sf "$PING" >/dev/null 2>&1; then
    echo "clickhouse: already answering on 127.0.0.1:8123"
    exit 0
fi

if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
    echo "clickhouse: installing clickhouse-server and clickhouse-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
fi

mkdir -p "$DIR"/{data,tmp,user_files,format_schemas,log}
cp /etc/clickhouse-server/users.xml "$DIR/users.xml"
# Point every path into DIR and listen on loopback only.
sed -e "s#<path>[^<]*</path>#<path>$DIR/data/</path>#" \
    -e "s#<tmp_path>[^<]*</tmp_path>#<tmp_path>$DIR/tmp/</tmp_path>#" \
    -e "s#<user_files_path>[^<]*</user_files_path>#<user_files_path>$DIR/user_files/</user_files_path>#" \
    -e "s#<format_schema_path>[^<]*</format_schema_path>#<format_schema_path>$DIR/format_schemas/</format_schema_path>#" \
    -e "s#<log>[^<]*</log>#<log>$DIR/log/clickhouse-server.log</log>#" \
    -e "s#<errorlog>[^<]*</errorlog>#<errorlog>$DIR/log/clickhouse-server.err.log</errorlog>#" \
    -e "s#<users_config>[^<]*</users_config>#<users_config>$DIR/users.xml</users_config>#" \
    -e '/<listen_host>/d' \
    /etc/clickhouse-server/config.xml > "$DIR/config.xml"
# Re-add a single loopback listen_host right after the opening tag.
sed -i '0,/<yandex>\|<clickhouse>/s##&\n    <listen_host>127.0.0.1</listen_host>#' "$DIR/config.xml"
chown -R clickhouse:clickhouse "$DIR"

echo "clickhouse: starting from $DIR"
setsid runuser -u clickhouse -- /usr/sbin/clickhouse-server --config-file="$DIR/config.xml" \
    >"$DIR/stdout.log" 2>&1 < /dev/null &

for _ in $(seq 1 120); do
    if curl -sf "$PING" >/dev/null 2>&1; then
        echo "clickhouse: ready ($(curl -sf 'http://127.0.0.1:8123/?query=SELECT%20version()'))"
        exit 0
    fi
    sleep 0.5
done
echo "clickhouse: did not answer within 60 s; see $DIR/stdout.log and $DIR/log" >&2
tail -n 30 "$DIR/stdout.log" "$DIR/log/clickhouse-server.err.log" >&2 || true
exit 1
