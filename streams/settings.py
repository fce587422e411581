"""Process settings read from the environment (connections, topic names, ports)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything the worker reads from its environment.

    Environment variables: KAFKA_BOOTSTRAP, REDIS_URL, RULES_FILE, APP_ID,
    TOPIC_EVENTS, TOPIC_SIGNALS, TOPIC_DLQ, TOPIC_DECISIONS, TOPIC_OUTCOMES, TOPIC_REPARTITION,
    TOPIC_PARTITIONS, WEB_PORT, REDIS_PREFIX, EMBEDDED_BROKER, DATA_DIR,
    BROKER_REBALANCE_TIMEOUT, BROKER_SESSION_TIMEOUT, BROKER_WAIT_SECONDS, LOG_LEVEL,
    LOG_FORMAT, SCORECARD_TOKEN; security: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
    KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE,
    KAFKA_SSL_KEYFILE, REDIS_SSL_CAFILE.

    Secrets stay out of output: KAFKA_SASL_PASSWORD and SCORECARD_TOKEN are SecretStrs,
    REDIS_URL (which may carry a password) is left out of the repr, and validation errors
    never echo an input.
    """

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        # A ValidationError's text would otherwise quote the value, password included.
        hide_input_in_errors=True,
    )

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port of the broker; unset starts the embedded broker"
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        repr=False,  # may carry a password: redis://:PASSWORD@host:6379/0
        description="redis://[[user]:password@]host:port/db, or rediss:// for TLS",
    )
    redis_ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle for a rediss:// REDIS_URL (default: the system's CAs)",
    )
    rules_file: Path = ROOT / "config" / "rules.yaml"
    app_id: str = "expansion-detector"

    topic_events: str = "product-events"
    topic_signals: str = "expansion-signals"
    topic_dlq: str = "product-events-dlq"
    topic_decisions: str = "expansion-decisions"
    topic_outcomes: str = "expansion-outcomes"
    topic_repartition: str = Field(
        default="", description="internal topic for events that arrived on the wrong partition"
    )
    topic_partitions: int = Field(default=8, ge=1, le=1024)

    message_max_bytes: int = Field(
        default=1_048_576,
        ge=1_048_576,
        description="the largest message the worker sends: its producers' max_request_size "
        "and the max.message.bytes of the topics it creates",
    )
    account_max_bytes: int = Field(
        default=16 * 1_048_576,
        ge=4096,
        description="the most one account's state records may take together; beyond it the "
        "account's oldest user history is dropped",
    )
    web_port: int = 6066
    redis_prefix: str = "expsig:"
    embedded_broker: bool = Field(
        default=False,
        description="the broker is Tansu (the embedded one or another): fetch with a short "
        "wait, and read end offsets from a fetch, so that changelog recovery restores every "
        "update (streams.io.transport)",
    )
    data_dir: Path = Path(".run/data")
    broker_rebalance_timeout: float = 3.0
    broker_session_timeout: float = 10.0
    broker_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="how long start-up waits for the broker to answer; 0 waits forever",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # validate_default: the SASL fields are checked against the protocol even when unset.
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, validate_default=True
    )
    kafka_sasl_username: str | None = Field(default=None, validate_default=True)
    kafka_sasl_password: SecretStr | None = Field(default=None, validate_default=True)
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle for the broker's certificate (default: system CAs)"
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="client certificate (PEM), for brokers that ask for one"
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, validate_default=True, description="the client certificate's key (PEM)"
    )
    scorecard_token: SecretStr | None = Field(
        default=None,
        description="the bearer token GET /scorecard asks for; unset: the endpoint is off",
    )
    log_level: Literal["debug", "info", "warn", "warning", "error", "crit", "critical"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line"
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "redis_ssl_cafile",
        "scorecard_token",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `KAFKA_SASL_PASSWORD=` in a compose file or .env means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _sasl_needs_all_three(cls, value: object, info: ValidationInfo) -> object:
        protocol = info.data.get("kafka_security_protocol")
        if protocol in ("SASL_PLAINTEXT", "SASL_SSL") and not (
            value.get_secret_value() if isinstance(value, SecretStr) else value
        ):
            raise ValueError(f"required when KAFKA_SECURITY_PROTOCOL={protocol}")
        return value

    @field_validator("redis_ssl_cafile", "kafka_ssl_cafile", "kafka_ssl_certfile")
    @classmethod
    def _tls_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if info.field_name == "redis_ssl_cafile":
            if urlsplit(info.data.get("redis_url", "")).scheme != "rediss":
                raise ValueError("needs a rediss:// REDIS_URL (Redis over TLS)")
        else:
            _needs_tls_protocol(info)
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        if info.field_name != "kafka_ssl_certfile":  # loaded together with its key, below
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, OSError) as error:
                raise ValueError(f"{value} is not a PEM CA bundle ({error})") from None
        return value

    @field_validator("kafka_ssl_keyfile")
    @classmethod
    def _key_of_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        certfile = info.data.get("kafka_ssl_certfile")
        if value is None:
            if certfile is not None:
                raise ValueError("required with KAFKA_SSL_CERTFILE")
            return None
        _needs_tls_protocol(info)
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        if certfile is None:
            raise ValueError("needs KAFKA_SSL_CERTFILE too")
        try:
            ssl.create_default_context().load_cert_chain(str(certfile), str(value))
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"cannot load the certificate {certfile} with this key ({error})"
            ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        # The message names the problem, never the URL: it may carry a password.
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
        return value

    @model_validator(mode="after")
    def _redis_ca_into_url(self) -> Settings:
        # redis-py reads `ssl_ca_certs` from the URL's query: whoever connects with
        # REDIS_URL (the worker's ledger, the demo) then trusts REDIS_SSL_CAFILE's CAs.
        if self.redis_ssl_cafile is not None:
            parts = urlsplit(self.redis_url)
            query = [(k, v) for k, v in parse_qsl(parts.query) if k != "ssl_ca_certs"]
            query.append(("ssl_ca_certs", str(self.redis_ssl_cafile)))
            self.redis_url = urlunsplit(parts._replace(query=urlencode(query)))
        return self

    @property
    def repartition_topic(self) -> str:
        return self.topic_repartition or f"{self.app_id}-events-by-account"

    @property
    def kafka_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def kafka_sasl(self) -> bool:
        return self.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _needs_tls_protocol(info: ValidationInfo) -> None:
    protocol = info.data.get("kafka_security_protocol")
    if protocol not in ("SSL", "SASL_SSL"):
        raise ValueError(f"needs KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, not {protocol}")
