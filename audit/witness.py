"""The external witness: every checkpoint's signed head, kept outside PostgreSQL.

Someone who can rewrite every table (a superuser, or the owner with its triggers off) can
cut the newest checkpoints off an organization's chain, change the entries they covered,
and remove the verifications that saw them; nothing inside the database then disagrees.
A copy of each checkpoint's head kept elsewhere does (CloudTrail's digest files). With
``AUDIT_WITNESS_FILE`` set, ``seal_audit_log`` appends one JSON line per checkpoint, once
it is committed::

    {"v": 1, "organization": 7, "slug": "acme", "sequence": 12, "entries": 10000,
     "lastEntryId": 123456, "lastStreamTxid": "9876", "head": "<hex>",
     "sealedAt": "2026-12-01T10:00:00.123456+00:00", "keyId": "<hex>", "signature": "<hex>"}

The operator keeps the file where the database's administrators cannot write (another
host, write-once storage, a log pipeline). ``verify_audit_log --witness FILE`` then fails
when any checkpoint it lists is missing from the chain or different, and sealing refuses
to continue a chain that is behind its witness. A line whose signature does not verify
with the seal key is reported too: the witness itself was edited.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import integrity


class WitnessError(ValueError):
    """The witness file cannot be read, or a line of it does not hold up."""


@dataclass(frozen=True)
class WitnessedCheckpoint:
    organization_id: int
    sequence: int
    head: bytes
    line: int


def witness_line(seal: Any, slug: str) -> str:
    """The witness line of a checkpoint (an ``AuditSeal``)."""
    return json.dumps(
        {
            "v": 1,
            "organization": seal.organization_id,
            "slug": slug,
            "sequence": seal.sequence,
            "entries": seal.entries,
            "lastEntryId": seal.last_entry_id,
            "lastStreamTxid": (
                str(seal.last_stream_txid) if seal.last_stream_txid is not None else None
            ),
            "head": bytes(seal.head).hex(),
            "sealedAt": seal.sealed_at.isoformat(),
            "keyId": seal.key_id,
            "signature": bytes(seal.signature).hex(),
        },
        separators=(",", ":"),
    )


def witness_append(path: str | Path, lines: Iterable[str]) -> None:
    """Append lines to the witness file and make them durable before returning."""
    with open(path, "a", encoding="utf-8") as witness:
        for line in lines:
            witness.write(line + "\n")
        witness.flush()
        os.fsync(witness.fileno())


def witness_read(path: str | Path) -> dict[int, dict[int, WitnessedCheckpoint]]:
    """Every checkpoint the file holds, by organization id and sequence; WitnessError
    names the first line that is not a witness line or whose signature does not verify."""
    from datetime import datetime

    found: dict[int, dict[int, WitnessedCheckpoint]] = {}
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        raise WitnessError(f"cannot read the witness file {path}: {error.strerror}") from None
    with handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            where = f"{path} line {number}"
            try:
                item = json.loads(text)
                organization_id = int(item["organization"])
                sequence = int(item["sequence"])
                head = bytes.fromhex(item["head"])
                txid = item["lastStreamTxid"]
                key = integrity.verifying_key(item["keyId"])
                signed = integrity.signature(
                    key or b"",
                    organization_id=organization_id,
                    sequence=sequence,
                    entries=int(item["entries"]),
                    last_entry_id=int(item["lastEntryId"]),
                    last_stream_txid=int(txid) if txid is not None else None,
                    head=head,
                    sealed_at=datetime.fromisoformat(item["sealedAt"]),
                )
                genuine = key is not None and hmac.compare_digest(
                    signed, bytes.fromhex(item["signature"])
                )
            except (ValueError, KeyError, TypeError) as error:
                raise WitnessError(f"{where} is not a witness line ({error})") from None
            if not genuine:
                raise WitnessError(
                    f"{where} (checkpoint {sequence} of organization {organization_id}) does "
                    "not match its signature: the witness was edited, or the key is unknown"
                )
            known = found.setdefault(organization_id, {}).get(sequence)
            if known is not None and known.head != head:
                raise WitnessError(
                    f"{where} witnesses checkpoint {sequence} of organization "
                    f"{organization_id} with another head than line {known.line}: the chain "
                    "was rewritten between them"
                )
            found[organization_id][sequence] = WitnessedCheckpoint(
                organization_id, sequence, head, number
            )
    return found


@dataclass(frozen=True)
class Witness:
    """A witness file, read once: its checkpoints by organization and sequence."""

    path: str
    checkpoints: dict[int, dict[int, WitnessedCheckpoint]]

    @classmethod
    def read(cls, path: str | Path) -> Witness:
        return cls(str(path), witness_read(path))

    def expected(self, organization_id: int) -> dict[int, integrity.Expected]:
        """One organization's witnessed checkpoints, as the verifier's expectations."""
        return {
            sequence: integrity.Expected(
                checkpoint.head, f"witnessed in {self.path} line {checkpoint.line}"
            )
            for sequence, checkpoint in self.checkpoints.get(organization_id, {}).items()
        }
