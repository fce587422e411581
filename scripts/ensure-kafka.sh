#!/usr/bin/env bash
# Make sure Apache Kafka's jars are in the cache and print their directory (the only output
# on success). Installs Debian's default-jre-headless and maven if java or mvn is missing;
# the first run downloads about 45 MB from Maven Central, later runs find them cached.
#   KAFKA_CACHE  where the jars go (default ~/.cache/expansion-detector)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$root/scripts/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
libs="${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/expansion-detector}/kafka-$version/libs"
# Written last: a download cut short is done again.
stamp="$libs/.complete-$(cksum <"$pom" | cut -d' ' -f1)"

# Progress goes to stderr: stdout is the directory, for whoever called.
command -v java >/dev/null || bash "$root/scripts/apt-install.sh" ensure-kafka default-jre-headless >&2
if [[ ! -e "$stamp" ]]; then
    command -v mvn >/dev/null || bash "$root/scripts/apt-install.sh" ensure-kafka maven >&2
    mkdir -p "$root/.run"
    log="$root/.run/kafka-download.log"
    echo "ensure-kafka: fetching Apache Kafka $version with Maven (log: .run/kafka-download.log)" >&2
    rm -rf "$libs"
    if ! mvn -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$libs" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "ensure-kafka: fetching Apache Kafka $version failed" >&2
        exit 1
    fi
    touch "$stamp"
fi
echo "$libs"
