"""Literal published signals, as the detector writes them, for tests of what reads them."""

from __future__ import annotations

from typing import Any

from streams.signals import ExpansionSignal, signal_id


def signal(account: str = "acct-1", route: str = "csm", **fields: Any) -> dict[str, Any]:
    """A valid v1 invite_surge signal (as a v1 detector wrote it: no account context, and
    still on the signals topic after an upgrade); `fields` replace any of its fields."""
    source = fields.pop("source_event_id", f"ev-{account}-{route}")
    base: dict[str, Any] = {
        "schema_version": 1,
        "signal_id": signal_id(account, "invite_surge", 1, source),
        "account_id": account,
        "trigger": "invite_surge",
        "expansion_type": "seat",
        "level": 1.0,
        "score": 73,
        "route": route,
        "segment": "mid_market",
        "estimated_expansion_mrr": 600.0,
        "signal_stack": 2,
        "co_signals": ["company_growth"],
        "supersedes": None,
        "evidence": {"invites": 6, "window_days": 30},
        "detected_at": "2026-11-02T09:00:00.000Z",
        "emitted_at": "2026-11-02T09:00:01.250Z",
        "source_event_id": source,
    }
    v2 = ExpansionSignal.model_validate(with_account({**base, **fields})).model_dump()
    return {name: value for name, value in {**v2, "schema_version": 1}.items() if name != "account"}


def with_account(base: dict[str, Any]) -> dict[str, Any]:
    """The signal as v2 writes it: schema_version 2 and the account's context."""
    return {
        **base,
        "schema_version": 2,
        "account": {
            "plan": "team",
            "seat_limit": 20,
            "seats_in_use": 17,
            "active_users_30d": 15,
            "mrr": 3000.0,
            "health_score": 88,
            "nps": 8,
            "renewal_date": None,
            "activated_at": "2025-06-01T00:00:00Z",
            "departments_30d": 2,
        },
    }
