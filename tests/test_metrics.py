"""The exporter's endpoint over real HTTP: a run's last values outlive the run until scraped."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dsqn_rllib.errors import ConfigError
from dsqn_rllib.ops.metrics import PrometheusExporter

LABELS = {"run_id": "r", "game": "pong", "model": "dsqn", "readout": "max-mem"}


def scrape(exporter: PrometheusExporter) -> dict[str, float]:
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_nothing_scrapes_the_endpoint_so_the_end_of_a_run_does_not_wait() -> None:
    exporter = PrometheusExporter(LABELS, 0)
    try:
        exporter.record_evaluation(3.0, 7.0)
        assert exporter.final_scrape_wait_s(120.0) == 0.0
        started = time.monotonic()
        assert exporter.wait_for_scrape(120.0) is False
        assert time.monotonic() - started < 60  # returned, not timed out
    finally:
        exporter.close()


def test_the_final_values_are_served_to_the_next_scrape_before_the_endpoint_closes() -> None:
    exporter = PrometheusExporter(LABELS, 0)
    try:
        assert "dsqn_eval_return_mean" not in scrape(exporter)  # no evaluation yet
        time.sleep(0.5)
        scrape(exporter)  # a scraper at work: every 0.5 s
        assert 1.0 <= exporter.final_scrape_wait_s(120.0) < 120.0
        exporter.record_evaluation(-20.5, -19.0)  # the run's last evaluation, just before its end

        later: list[dict[str, float]] = []
        scraper = threading.Timer(0.5, lambda: later.append(scrape(exporter)))
        scraper.start()
        assert exporter.wait_for_scrape(120.0) is True
        scraper.join()
        assert later[0]["dsqn_eval_return_mean"] == -20.5
        assert later[0]["dsqn_eval_return_max"] == -19.0
        assert exporter.scrapes.count == 3  # complete scrapes: two before and the awaited one
    finally:
        exporter.close()


def test_a_single_manual_scrape_does_not_hold_the_end_of_the_run() -> None:
    """One ``curl`` shows no scraper at work: the end of the run does not wait 120 s for a
    second one; nor after a scraper that stopped (its last scrape long past its interval)."""
    exporter = PrometheusExporter(LABELS, 0)
    try:
        scrape(exporter)
        exporter.record_evaluation(1.0, 2.0)
        started = time.monotonic()
        assert exporter.final_scrape_wait_s(120.0) == 0.0
        assert exporter.wait_for_scrape(120.0) is False
        assert time.monotonic() - started < 1.0
        scrape(exporter)
        time.sleep(0.05)
        scrape(exporter)  # a scraper every ~0.05 s ...
        assert exporter.final_scrape_wait_s(120.0) > 0
        time.sleep(0.5)  # ... that stopped
        assert exporter.final_scrape_wait_s(120.0) == 0.0
    finally:
        exporter.close()


def test_a_metrics_port_taken_after_the_preflight_is_one_line() -> None:
    taken = PrometheusExporter(LABELS, 0)
    try:
        with pytest.raises(ConfigError, match=rf"cannot serve metrics on 127.0.0.1:{taken.port}"):
            PrometheusExporter(LABELS, taken.port)
    finally:
        taken.close()


def test_the_wait_is_bounded_by_twice_the_scrape_interval_seen() -> None:
    exporter = PrometheusExporter(LABELS, 0)
    try:
        first = time.monotonic()
        scrape(exporter)
        time.sleep(0.2)
        scrape(exporter)
        gap_upper = time.monotonic() - first
        bound = exporter.final_scrape_wait_s(120.0)
        assert 0.4 <= bound <= 2 * gap_upper  # twice the gap, not the 120 s timeout
        assert exporter.final_scrape_wait_s(0.1) == 0.1  # the timeout when it is shorter
        assert exporter.final_scrape_wait_s(0.0) == 0.0  # 0: close at once
        # No scraper comes back: the wait gives up after the bound and says so.
        assert exporter.wait_for_scrape(120.0) is False
        # A scrape that began after the values were set counts, though it ended before the
        # wait began; one that began before them does not.
        values_set_at = time.monotonic()
        scrape(exporter)
        assert exporter.wait_for_scrape(120.0, values_set_at) is True
        assert exporter.wait_for_scrape(120.0, time.monotonic()) is False
    finally:
        exporter.close()


def test_a_scrape_counts_once_it_has_read_every_series() -> None:
    """The clock's markers bracket the series: opening first, closing last in the registry."""
    exporter = PrometheusExporter(LABELS, 0)
    try:
        collectors = list(exporter.registry._collector_to_names)
        assert collectors[0] is exporter.scrapes.opening
        assert collectors[-1] is exporter.scrapes.closing
        assert len(collectors) > 20  # the run's series lie between them
        # A scrape that never reaches the closing marker is not counted.
        exporter.scrapes.opening.collect()
        assert exporter.scrapes.count == 0 and exporter.final_scrape_wait_s(120.0) == 0.0
        exporter.scrapes.closing.collect()
        assert exporter.scrapes.count == 1
    finally:
        exporter.close()


def test_the_process_series_of_the_default_registry_are_kept() -> None:
    """A custom registry starts empty: the run's endpoint adds the process, platform and GC
    collectors back (CPU seconds, resident memory, Python version)."""
    exporter = PrometheusExporter(LABELS, 0)
    try:
        values = scrape(exporter)
        assert values["process_cpu_seconds_total"] > 0
        assert values["process_resident_memory_bytes"] > 1e6
        assert "python_info" in values and "python_gc_collections_total" in values
    finally:
        exporter.close()
