"""Reading a Prometheus scrape the way Prometheus does (the client's own text parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

#: A sample's name and labels, e.g. ("cdp_deliveries_received_total", (("activation", "test-client"),)).
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def samples(text: str) -> dict[SampleKey, float]:
    """Every sample of a scrape, by name and sorted labels."""
    found: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the scrape does not have it (a counter never incremented)."""
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)
