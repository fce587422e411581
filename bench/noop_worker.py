"""The framework's ceiling: a Faust app whose one agent only iterates the input topic.

Run by the benchmark as `python -m bench.noop_worker` with the worker's environment
(KAFKA_BOOTSTRAP, APP_ID, TOPIC_EVENTS, TOPIC_PARTITIONS, EMBEDDED_BROKER, DATA_DIR,
WEB_PORT) plus BENCH_EXPECT, the number of events in the topic, and BENCH_RESULT, a file.
With BENCH_DECODE=1 the agent also decodes each message as the worker does (orjson and the
pydantic event models, streams.events.decode) and counts its events; without, a message is
one event. When the agent has counted them all it writes {"count", "after_first", "seconds"} to that
file: the time from the first message to the last, and the events after the first message
(not to stdout: a Faust worker redirects it into its log).
The app is built with the settings of streams/app.py that bear on throughput: the same
transport (on the embedded broker, the one with a short fetch wait), memory store,
at-least-once, raw topics, the same broker timeouts and producer batch size.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import faust
import orjson

from streams.app import new_faust_app
from streams.events import decode
from streams.settings import Settings


def create_app(
    settings: Settings, expected: int, result_path: Path, decoding: bool = False
) -> faust.App:
    app = new_faust_app(settings)  # the worker's own configuration
    topic = app.topic(settings.topic_events, key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="noop")
    async def noop(stream: faust.StreamT) -> None:
        count, first, in_first = 0, 0.0, 0
        async for event in stream.events():
            count += len(decode(event.value).events) if decoding else 1
            if not in_first:
                first, in_first = time.perf_counter(), count
            if count == expected:
                seconds = time.perf_counter() - first
                # the events after the first message, over the time they took
                result = {"count": count, "after_first": count - in_first, "seconds": seconds}
                partial = result_path.with_suffix(".partial")
                partial.write_bytes(orjson.dumps(result))
                partial.rename(result_path)

    return app


def main() -> int:
    settings = Settings()
    app = create_app(
        settings,
        int(os.environ["BENCH_EXPECT"]),
        Path(os.environ["BENCH_RESULT"]),
        decoding=os.environ.get("BENCH_DECODE") == "1",
    )
    try:
        faust.Worker(app, loglevel="warn", quiet=True).execute_from_commandline()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
