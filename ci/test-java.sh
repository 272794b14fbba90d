#!/usr/bin/env bash
# Java package (bindings-java): builds the JNI library with cargo (from Maven), runs the JUnit 5
# suite under Surefire twice (plain JVM, then with HotSpot's libjsig preloaded), packages the jar
# with the native library inside, and runs both examples/java programs against that jar.
# Needs: Rust, Java 17+ (JDK), Maven. Exits non-zero on any failure.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

need_apt=()
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
# RecordTest reads recordings back with the sqlite3 shell.
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
fi

java_major="$(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')"
if [ "$java_major" -lt 17 ]; then
    echo "Java 17 or newer is required (javac $java_major found)" >&2
    exit 1
fi
java_home="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
if [ ! -f "$java_home/lib/libjsig.so" ]; then
    echo "$java_home/lib/libjsig.so is missing: the jsig test run needs the JDK's signal-chaining library" >&2
    exit 1
fi

# cargo build (exec plugin) -> jar resources -> tests (default-test, jsig) -> jar.
# The cargo project keeps its own target dir (bindings-java/native/target).
mvn -B -ntp -f bindings-java/pom.xml package

jar="bindings-java/target/memwatch-0.1.0.jar"
jar tf "$jar" | grep -qx 'native/linux-x86_64/libmemwatch_java.so' \
    || { echo "the jar lacks native/linux-x86_64/libmemwatch_java.so" >&2; exit 1; }

echo
echo "== examples/java against the packaged jar (native library extracted from the jar)"
out="$(java -cp "$jar" examples/java/MemWatchExample.java)"
echo "$out"
grep -qx 'buffer changed: bytes \[0, 1) 00 -> 2a.*' <<<"$out" || { echo "example: buffer event missing" >&2; exit 1; }
grep -qx 'data changed: bytes \[0, 1) 00 -> 2a bytes \[10, 11) 00 -> 07' <<<"$out" || { echo "example: data event missing" >&2; exit 1; }
grep -qx 'backend: .*, events: 2' <<<"$out" || { echo "example: wrong event count" >&2; exit 1; }
echo "examples/java: ok"

echo
echo "== examples/java/ValueStoreExample.java (large values via the value store)"
out="$(java -cp "$jar" examples/java/ValueStoreExample.java)"
echo "$out"
grep -qx 'image changed: bytes \[100, 102) 0000 -> 0102, inline value: null' <<<"$out" \
    || { echo "value store example: event or stored values missing" >&2; exit 1; }
grep -qx 'keys: memwatch/4/1/0, memwatch/4/1/1 (65536 bytes each)' <<<"$out" \
    || { echo "value store example: wrong keys" >&2; exit 1; }
grep -qx 'store unlinked: true' <<<"$out" || { echo "value store example: store not unlinked" >&2; exit 1; }
echo "examples/java/ValueStoreExample: ok"
