"""What the webhook sink posts: the signal as published (json), or a Slack message."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

import orjson

from streams import present

SIGNATURE_HEADER = "X-Expansion-Signature"
# Receivers dedup on it: a post the receiver answered but the sink could not record
# (a crash in between) is sent again with the same key.
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Fields a --link template may name, each URL-quoted.
LINK_FIELDS = ("account_id", "signal_id", "trigger", "route", "segment")


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def link(template: str, signal: dict[str, Any]) -> str:
    """The template with {account_id}, {signal_id}, ... filled in from the signal."""
    return template.format_map({name: quote(str(signal[name]), safe="") for name in LINK_FIELDS})


def account_context(signal: dict[str, Any]) -> str | None:
    """The account as the detector knew it when the signal fired (a v2 signal's `account`),
    in a few words; None for a signal without it."""
    account = signal.get("account")
    if not account:
        return None
    known = {name: value for name, value in account.items() if value is not None}
    parts = []
    if "plan" in known:
        parts.append(f"plan {known['plan']}")
    if "seats_in_use" in known:
        limit = known.get("seat_limit")
        of = " (unlimited)" if limit == 0 else f" of {limit}" if limit is not None else ""
        parts.append(f"{known['seats_in_use']} seats in use{of}")
    if "active_users_30d" in known:
        parts.append(f"{known['active_users_30d']} active users in 30 days")
    if "departments_30d" in known:
        parts.append(f"{known['departments_30d']} departments")
    if "mrr" in known:
        parts.append(f"MRR ${known['mrr']:,.0f}")
    if "health_score" in known:
        parts.append(f"health {known['health_score']:g}")
    if "nps" in known:
        parts.append(f"NPS {known['nps']:g}")
    if "renewal_date" in known:
        parts.append(f"renews {str(known['renewal_date'])[:10]}")
    if "activated_at" in known:
        parts.append(f"activated {str(known['activated_at'])[:10]}")
    return ", ".join(parts) or None


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(signal: dict[str, Any], link_template: str | None = None) -> dict[str, Any]:
    """An incoming-webhook message a person reads at a glance.

    `text` (the notification, and what clients without blocks show) is the demo's line;
    the blocks say the same in parts: who, what and where it goes, why, and the context.
    """
    account = _escape(signal["account_id"])
    if link_template is not None:
        account = f"<{link(link_template, signal)}|{account}>"
    headline = (
        f"*{account}* ({signal['segment']}): *{signal['trigger']}* level {signal['level']:g}"
        f" → *{signal['route']}*, score {signal['score']}, "
        f"+${signal['estimated_expansion_mrr']:,.0f}/mo"
    )
    details = []
    if signal.get("co_signals"):
        details.append("co-signals: " + ", ".join(signal["co_signals"]))
    context = account_context(signal)
    if context is not None:
        details.append("account: " + context)
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{headline}\n{_escape(present.why(signal))}"},
        }
    ]
    if details:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _escape(part)} for part in details],
            }
        )
    return {"text": _escape(present.line(signal)), "blocks": blocks}


def body(form: str, raw: bytes, signal: dict[str, Any], link_template: str | None) -> bytes:
    """The request body: the signal's bytes as published, or the Slack message."""
    if form == "json":
        return raw
    return orjson.dumps(slack_message(signal, link_template))
