"""Exporting records to Raptor's Streaming API in batches, with constant memory.

Records are read from the registered sources one at a time, turned into items,
serialised, and grouped into batches bounded by count and by bytes; each batch is sent
and dropped before the next is read. A record that cannot be sent is reported and
skipped, never sent broken. The first batch that fails (after the client's retries)
stops the export, and the summary says what was and was not sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from .export_sources import ExportRegistry, UnsendableRecord
from .streaming import SendFailed, StreamClient

DRAFT_SAMPLE = 100
DEFAULT_BATCH_SIZE = 500
DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_SKIPS_LISTED = 20


@dataclass
class ExportSummary:
    """What an export did."""

    records: int = 0
    batches: int = 0
    bytes: int = 0
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)
    failed_records: int = 0
    failure: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None

    def line(self) -> str:
        """The one-line summary printed at the end."""
        text = (
            f"records={self.records} batches={self.batches} bytes={self.bytes} "
            f"seconds={self.seconds:.1f} skipped={self.skipped} failures={1 if self.failure else 0}"
        )
        if self.failure:
            text += f"; NOT SENT: a batch of {self.failed_records} records ({self.failure}); the export stopped there"
        return text


@dataclass(frozen=True)
class ExportRequest:
    """What to export and how (the command's options)."""

    kind: str
    type_name: str | None = None
    draft: bool = True
    limit: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES

    @property
    def record_limit(self) -> int | None:
        """A draft sends a sample: the first 100 records unless a limit is given."""
        return self.limit if self.limit is not None else (DRAFT_SAMPLE if self.draft else None)


@dataclass
class _Batch:
    parts: list[bytes] = field(default_factory=list)
    size: int = 2  # the brackets

    def fits(self, encoded: bytes, request: ExportRequest) -> bool:
        return len(self.parts) < request.batch_size and self.size + len(encoded) + 1 <= request.max_batch_bytes

    def add(self, encoded: bytes) -> None:
        self.parts.append(encoded)
        self.size += len(encoded) + (1 if len(self.parts) > 1 else 0)

    def body(self) -> bytes:
        return b"[" + b",".join(self.parts) + b"]"


Deliver = Callable[[bytes], None]


def run_export(
    registry: ExportRegistry,
    request: ExportRequest,
    deliver: Deliver,
    *,
    report_skip: Callable[[str], None] = lambda message: None,
    progress: Callable[[ExportSummary], None] = lambda summary: None,
) -> ExportSummary:
    """Read, batch and deliver; ``deliver`` raises :class:`SendFailed` for a failed batch."""
    started = time.monotonic()
    summary = ExportSummary()
    batch = _Batch()
    try:
        for encoded in _encoded_items(registry, request, summary, report_skip):
            if not batch.fits(encoded, request):
                _deliver(batch, deliver, summary, progress)
                batch = _Batch()
            batch.add(encoded)
        if batch.parts:
            _deliver(batch, deliver, summary, progress)
    except SendFailed as failed:
        summary.failure = str(failed)
    summary.seconds = time.monotonic() - started
    return summary


def _deliver(batch: _Batch, deliver: Deliver, summary: ExportSummary, progress: Callable[[ExportSummary], None]) -> None:
    body = batch.body()
    try:
        deliver(body)
    except SendFailed:
        summary.failed_records = len(batch.parts)
        raise
    summary.records += len(batch.parts)
    summary.batches += 1
    summary.bytes += len(body)
    progress(summary)


def _encoded_items(
    registry: ExportRegistry, request: ExportRequest, summary: ExportSummary, report_skip: Callable[[str], None]
) -> Iterator[bytes]:
    remaining = request.record_limit
    for type_name, source in registry.selected_sources(request.kind, request.type_name).items():
        for record, item in registry.items(request.kind, type_name, source()):
            if remaining is not None and remaining <= 0:
                return
            encoded = _encode(item, request)
            if isinstance(encoded, UnsendableRecord):
                _skip(summary, report_skip, record, type_name, encoded)
                continue
            if remaining is not None:
                remaining -= 1
            yield encoded


def _encode(item: dict[str, Any] | UnsendableRecord, request: ExportRequest) -> bytes | UnsendableRecord:
    if isinstance(item, UnsendableRecord):
        return item
    encoded = json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(encoded) + 2 > request.max_batch_bytes:
        return UnsendableRecord(f"the item is {len(encoded)} bytes, more than a whole batch may hold")
    return encoded


def _skip(summary: ExportSummary, report: Callable[[str], None], record: Any, type_name: str, problem: Exception) -> None:
    summary.skipped += 1
    identity = _record_identity(record)
    message = f"skipped {type_name} record {identity}: {problem}"
    if len(summary.skip_reasons) < MAX_SKIPS_LISTED:
        summary.skip_reasons.append(message)
    report(message)


def _record_identity(record: Any) -> str:
    value = record.get("id") if isinstance(record, dict) else getattr(record, "id", None)
    return f"id={value!r}" if value not in (None, "") else "(no id)"


def deliver_to(client: StreamClient, draft: bool) -> Deliver:
    """Send each batch through ``client``."""
    return lambda body: client.send(body, draft=draft)


def print_batches(out: TextIO) -> Deliver:
    """For ``--dry-run``: print each batch's JSON instead of sending it."""

    def deliver(body: bytes) -> None:
        out.write(body.decode("utf-8") + "\n")

    return deliver
