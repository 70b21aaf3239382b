"""A captured real request can be supported by registering a format, without domain changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from cdp_bridge.errors import PayloadError
from cdp_bridge.model import ActivationDocument, AudienceChange, SegmentMetadata
from tests.support.webhook import cdp_of, delivery_rows, memberships, post_webhook


class SegmentExportFormat:
    """A made-up vendor shape: {"segment": {"key", "title"}, "userIds": [...]}."""

    name = "vendor.segment-export"

    def accepts(self, document: Any, headers: Mapping[str, str]) -> bool:
        return isinstance(document, dict) and "segment" in document

    def parse(self, document: Any) -> ActivationDocument:
        segment = document["segment"]
        if not isinstance(segment, dict) or "key" not in segment:
            raise PayloadError("invalid_payload", "segment.key is required")
        ids = tuple(str(u) for u in document.get("userIds", []))
        change = AudienceChange(segment["key"], SegmentMetadata(name=segment.get("title")), members=ids)
        return ActivationDocument((change,), items=len(ids))


def test_registered_format_reads_its_bodies_and_native_ones_still_work(webhook_app: Flask) -> None:
    cdp = cdp_of(webhook_app)
    cdp.register_payload_format(SegmentExportFormat())
    try:
        answer = post_webhook(webhook_app, {"segment": {"key": "k1", "title": "Title"}, "userIds": [1, 2]}).get_json()
        assert answer["status"] == "applied"
        assert post_webhook(webhook_app, {"audiences": [{"id": "native", "add": ["9"]}]}).status_code == 200
        refused = post_webhook(webhook_app, {"segment": "no key"})
        assert refused.status_code == 400 and refused.get_json()["message"] == "segment.key is required"
    finally:
        cdp.hooks.payload_formats.pop(0)
    assert memberships(webhook_app) == {"k1": {"1", "2"}, "native": {"9"}}
    assert [d.payload_format for d in delivery_rows(webhook_app)] == ["cdp_bridge.v1", "vendor.segment-export"]
