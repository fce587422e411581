#!/usr/bin/env bash
# Make sure a Redis server answers at $REDIS_URL: install and start a local one if none does.
set -euo pipefail

url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="$root/.run"

# redis://[user:password@]host[:port][/db] -> host, port
authority="${url#*://}"
authority="${authority%%/*}"
authority="${authority##*@}"
host="${authority%:*}"
port="${authority##*:}"
[[ "$authority" == *:* ]] || port=6379
[[ "$host" == localhost ]] && host=127.0.0.1

answers() {
    if command -v redis-cli >/dev/null; then
        [[ "$(redis-cli -u "$url" ping 2>/dev/null)" == PONG ]]
    else
        # No client installed yet; a raw PING avoids installing packages for a server that is up.
        (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 \
            && [[ "$reply" == +PONG* ]]) 2>/dev/null
    fi
}

answers && exit 0

if [[ "$host" != 127.0.0.1 ]]; then
    echo "ensure-redis: nothing answers at $url, and only a local Redis can be started" >&2
    exit 1
fi

mkdir -p "$run_dir"
if ! command -v redis-server >/dev/null; then
    bash "$root/scripts/apt-install.sh" ensure-redis redis-server
    # The package may start its own service on the default port.
    answers && { echo "ensure-redis: redis-server installed and answering at $url"; exit 0; }
fi

redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$run_dir" --pidfile "$run_dir/redis-$port.pid" --logfile "$run_dir/redis.log"

for _ in $(seq 50); do
    if answers; then
        echo "ensure-redis: started redis-server on 127.0.0.1:$port (memory only; log: .run/redis.log)"
        exit 0
    fi
    sleep 0.2
done
tail -n 20 "$run_dir/redis.log" >&2 || true
echo "ensure-redis: redis-server on 127.0.0.1:$port did not answer within 10s" >&2
exit 1
