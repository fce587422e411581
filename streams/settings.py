"""Process settings read from the environment (connections, topic names, ports)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything the worker reads from its environment.

    Environment variables: KAFKA_BOOTSTRAP, REDIS_URL, RULES_FILE, APP_ID,
    TOPIC_EVENTS, TOPIC_SIGNALS, TOPIC_DLQ, TOPIC_DECISIONS, TOPIC_REPARTITION,
    TOPIC_PARTITIONS, WEB_PORT, REDIS_PREFIX, EMBEDDED_BROKER, DATA_DIR,
    BROKER_REBALANCE_TIMEOUT, BROKER_SESSION_TIMEOUT, LOG_LEVEL, LOG_FORMAT.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port of the broker; unset starts the embedded broker"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    rules_file: Path = ROOT / "config" / "rules.yaml"
    app_id: str = "expansion-detector"

    topic_events: str = "product-events"
    topic_signals: str = "expansion-signals"
    topic_dlq: str = "product-events-dlq"
    topic_decisions: str = "expansion-decisions"
    topic_repartition: str = Field(
        default="", description="internal topic for events that arrived on the wrong partition"
    )
    topic_partitions: int = Field(default=8, ge=1, le=1024)

    web_port: int = 6066
    redis_prefix: str = "expsig:"
    embedded_broker: bool = Field(
        default=False,
        description="the broker is the embedded Tansu: send single-record batches so that "
        "changelog recovery restores every update",
    )
    data_dir: Path = Path(".run/data")
    broker_rebalance_timeout: float = 3.0
    broker_session_timeout: float = 10.0
    log_level: Literal["debug", "info", "warn", "warning", "error", "crit", "critical"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line"
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def repartition_topic(self) -> str:
        return self.topic_repartition or f"{self.app_id}-events-by-account"
