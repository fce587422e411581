"""Command line: python -m streams COMMAND (worker, demo, scorecard, backtest, simulate, ...)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m streams COMMAND [options]

commands:
  worker     run the detector (KAFKA_BOOTSTRAP, REDIS_URL, RULES_FILE from the environment;
             without KAFKA_BOOTSTRAP it starts an embedded broker for itself)
  demo       embedded broker + worker + a simulated customer base; prints signals
  simulate   write a simulated customer base as contract events (JSON lines, or Kafka)
  backtest   replay an events file through the detector; per-trigger coverage and
             false positives against an outcomes file, rules files side by side
  scorecard  print the readiness scorecard from Redis, most ready first
             [--top N] [--segment S] [--format table|json|csv]
  broker     run the embedded Kafka-compatible broker (Tansu) in the foreground
  kafka      run an Apache Kafka broker (KRaft, single node) in the foreground
  sink       post signals to a webhook or Slack: sink webhook --url URL [--format slack]
  tail       print signals as they arrive, in the demo's words [--route R] [--account A]
  schemas    write the JSON Schemas of events, signals and records into schemas/
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "worker":
        from streams.worker import main as worker

        return worker(rest)
    if command == "demo":
        from streams.demo import main as demo

        return demo(rest)
    if command == "simulate":
        from streams.simulate.cli import main as simulate

        return simulate(rest)
    if command == "backtest":
        from streams.backtest.cli import main as backtest

        return backtest(rest)
    if command == "scorecard":
        from streams.scorecard import main as scorecard

        return scorecard(rest)
    if command == "broker":
        from streams.embedded import main as broker

        return broker(rest)
    if command == "kafka":
        from streams.apache_kafka import main as kafka

        return kafka(rest)
    if command == "sink":
        from streams.sink.webhook import main as sink

        return sink(rest)
    if command == "tail":
        from streams.tail import main as tail

        return tail(rest)
    if command == "schemas":
        from streams.schemas import main as schemas

        return schemas(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
