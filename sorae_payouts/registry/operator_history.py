"""What a program's operator registry was at any time, as its signed history proves it.

The `operator` row (status, current key) is what the engine reads to refuse early; it is a cache. Before
money moves, the executor asks this module instead: it replays the program's registry from its
append-only records, trusting only
- keys registered by a bootstrap (`operator_bootstrap`, written by the database owner: on PostgreSQL
  the application's role cannot, see revision 0050), and
- requests whose signature verifies with the requester's key valid when they asked, confirmed by a
  DIFFERENT operator (not the requester, not the change's subject) whose signature verifies with
  their key valid when they confirmed, both active then;
and honouring every `disabled` event whoever wrote it (a forged one can only take a voice away).
A row written behind the engine's back (an operator enabled by hand, a confirmation whose signature
does not verify, a key set by an UPDATE) changes nothing here.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.core.signing import KeyFormatError, key_id_of, signed_time, verify
from sorae_payouts.ledger.sql import as_utc, text

REQUEST, CONFIRMATION = "registry-request", "registry-confirmation"


def request_fields(program_id: str, row) -> dict:
    """The signed content of a registry request (`row`: an operator_request row or the same attributes)."""
    return {
        "program": program_id,
        "kind": row.kind,
        "subject": row.subject,
        "display_name": row.display_name,
        "key_id": row.key_id,
        "public_key": row.public_key,
        "policy": row.policy_value,
        "requested_by": row.requested_by,
        "requester_key_id": row.requester_key_id,
        "requested_at": signed_time(as_utc(row.requested_at)),
    }


def confirmation_fields(
    program_id: str, request_pk: int, request_signature: str, confirmed_by: str, key_id: str, at: datetime
) -> dict:
    """The signed content of a confirmation: bound to one request through its pk and its signature."""
    return {
        "program": program_id,
        "request_pk": int(request_pk),
        "request_signature": request_signature,
        "confirmed_by": confirmed_by,
        "confirmer_key_id": key_id,
        "confirmed_at": signed_time(at),
    }


@dataclass(frozen=True)
class Span:
    """From `at` on (until the next span), the operator is `active` (or not) with this key."""

    at: datetime
    active: bool
    key_id: str | None
    public_key: str | None


@dataclass
class RegistryHistory:
    program_id: str
    timelines: dict[str, list[Span]] = field(default_factory=dict)
    verified_requests: dict[int, object] = field(default_factory=dict)  # request_pk -> its row
    ignored: list[str] = field(default_factory=list)  # records that prove nothing, and why

    def state_at(self, operator_id: str, at: datetime) -> Span | None:
        spans = self.timelines.get(operator_id) or []
        index = bisect.bisect_right([s.at for s in spans], at) - 1
        return spans[index] if index >= 0 else None

    def key_at(self, operator_id: str, at: datetime) -> tuple[str, str] | None:
        """(key id, public key) of the operator if they were active with a key at `at`."""
        span = self.state_at(operator_id, at)
        if span is None or not span.active or span.key_id is None or span.public_key is None:
            return None
        return span.key_id, span.public_key

    def verifies(self, operator_id: str, key_id: str, at: datetime, kind: str, fields: dict, signature) -> bool:
        """Whether `operator_id` was active at `at` with key `key_id` and signed exactly this statement."""
        key = self.key_at(operator_id, at)
        return key is not None and key[0] == key_id and verify(key[1], kind, fields, signature)

    def _append(self, operator_id: str, span: Span) -> None:
        self.timelines.setdefault(operator_id, []).append(span)

    @classmethod
    def load(cls, conn: sa.Connection, program_id: str) -> RegistryHistory:
        history = cls(program_id)
        # (time, order, pk, kind, row): at one instant, bootstraps come first (their operators may confirm
        # requests at that very time), then confirmations in the order they were made, then disables
        # (a voice taken away at an instant is away at that instant).
        events: list[tuple] = []
        for k in conn.execute(
            text(
                "SELECT key_pk, operator_id, key_id, public_key, registered_at FROM operator_key "
                "WHERE program_id = :p AND bootstrap_pk IS NOT NULL"
            ),
            {"p": program_id},
        ):
            events.append((as_utc(k.registered_at), 0, int(k.key_pk), "bootstrap", k))
        for r in conn.execute(
            text(
                "SELECT r.request_pk, r.kind, r.subject, r.display_name, r.key_id, r.public_key, r.policy_value, "
                "r.requested_by, r.requester_key_id, r.requested_at, r.signature, c.confirmed_by, "
                "c.confirmer_key_id, c.confirmed_at, c.signature AS confirmation_signature, c.confirmation_pk "
                "FROM operator_request r "
                "JOIN operator_confirmation c ON c.request_pk = r.request_pk "
                "WHERE r.program_id = :p AND c.program_id = :p"
            ),
            {"p": program_id},
        ):
            events.append((as_utc(r.confirmed_at), 1, int(r.confirmation_pk), "confirmed", r))
        for e in conn.execute(
            text(
                "SELECT event_pk, operator_id, recorded_at FROM operator_event WHERE program_id = :p "
                "AND event = 'disabled'"
            ),
            {"p": program_id},
        ):
            events.append((as_utc(e.recorded_at), 2, int(e.event_pk), "disabled", e))
        for at, _, _, kind, row in sorted(events, key=lambda e: e[:3]):
            if kind == "bootstrap":
                history._append(row.operator_id, Span(at, True, row.key_id, row.public_key))
            elif kind == "disabled":
                span = history.state_at(row.operator_id, at)  # the key stays (inactive) for a later enable
                key = (span.key_id, span.public_key) if span else (None, None)
                history._append(row.operator_id, Span(at, False, *key))
            else:
                history._confirmed(row, at)
        return history

    def _confirmed(self, r, at: datetime) -> None:
        why = self._refusal(r, at)
        if why:
            self.ignored.append(f"request {r.request_pk} ({r.kind} {r.subject or ''}): {why}")
            return
        self.verified_requests[int(r.request_pk)] = r
        current = self.state_at(r.subject, at) if r.subject else None
        if r.kind in ("add", "rekey"):
            self._append(
                r.subject, Span(at, r.kind == "add" or bool(current and current.active), r.key_id, r.public_key)
            )
        elif r.kind == "enable" and current is not None:
            self._append(r.subject, Span(at, True, current.key_id, current.public_key))

    def _refusal(self, r, at: datetime) -> str | None:
        requested_at = as_utc(r.requested_at)
        if requested_at > at:
            return "confirmed before it was requested"
        if r.confirmed_by == r.requested_by or (r.subject is not None and r.confirmed_by == r.subject):
            return "confirmed by its requester or its subject"
        fields = request_fields(self.program_id, r)
        if not self.verifies(r.requested_by, r.requester_key_id, requested_at, REQUEST, fields, r.signature):
            return "the request's signature does not verify with the requester's key of that time"
        if self.key_at(r.requested_by, at) is None:
            return "the requester was no longer active when it was confirmed"
        confirmation = confirmation_fields(
            self.program_id, r.request_pk, r.signature, r.confirmed_by, r.confirmer_key_id, at
        )
        if not self.verifies(
            r.confirmed_by, r.confirmer_key_id, at, CONFIRMATION, confirmation, r.confirmation_signature
        ):
            return "the confirmation's signature does not verify with the confirmer's key of that time"
        current = self.state_at(r.subject, at) if r.subject else None
        if r.kind in ("add", "rekey"):
            try:
                if key_id_of(r.public_key) != r.key_id:
                    return "the key id is not the public key's"
            except KeyFormatError:
                return "the public key is malformed"
        if r.kind == "add" and current is not None:
            return "the operator already existed"
        if r.kind in ("enable", "rekey", "rename") and current is None:
            return "no such operator then"
        if r.kind == "enable" and current is not None and current.active:
            return "the operator was already active"
        if r.kind == "disable":
            return "a disable request needs no confirmation"
        return None
