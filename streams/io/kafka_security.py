"""SASL and TLS for every Kafka client the project makes, built once from the settings.

`aiokafka_kwargs` is what AIOKafkaAdminClient, AIOKafkaProducer and AIOKafkaConsumer take;
`faust_credentials` is the same set-up as Faust's `broker_credentials`. Both come from
KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_* (validated in streams.settings).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from streams.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context (hostname checked) for SSL and SASL_SSL; None otherwise.

    KAFKA_SSL_CAFILE replaces the system's CAs; KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE add a
    client certificate for brokers that ask for one (mutual TLS).
    """
    if not settings.kafka_tls:
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if settings.kafka_ssl_certfile is not None:
        keyfile = str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None
        context.load_cert_chain(str(settings.kafka_ssl_certfile), keyfile)
    return context


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """security_protocol, ssl_context and sasl_* keyword arguments for aiokafka clients."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_sasl:
        assert settings.kafka_sasl_password is not None  # validated with the protocol
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's `broker_credentials` for the same set-up; None for PLAINTEXT."""
    import faust

    if settings.kafka_sasl:
        assert settings.kafka_sasl_password is not None  # validated with the protocol
        # Faust takes SASL_SSL from the presence of the TLS context.
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context(settings),
        )
    context = ssl_context(settings)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def describe(settings: Settings) -> str:
    """The security set-up in words, for the start-up log line: never a password."""
    parts: list[str] = [settings.kafka_security_protocol]
    if settings.kafka_sasl:
        parts.append(f"{settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username}")
    if settings.kafka_tls:
        parts.append(f"CA {settings.kafka_ssl_cafile or 'system'}")
        if settings.kafka_ssl_certfile:
            parts.append(f"client certificate {settings.kafka_ssl_certfile}")
    return ", ".join(parts)
