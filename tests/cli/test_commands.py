"""The flask cdp commands: output and exit status (0 ok, 1 failure, 2 usage/config)."""

from __future__ import annotations

import re
from dataclasses import replace

from flask import Flask

from cdp_bridge.model import ScheduledExport
from cdp_bridge.secret import Secret
from tests.support.webhook import ACTIVATION


def run(app: Flask, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=["cdp", *args], input=input)


def test_init_db_creates_the_tables(make_app) -> None:
    app = make_app(create_tables=False)
    result = run(app, "init-db")
    assert result.exit_code == 0, result.output
    assert "tables are ready" in result.output
    assert run(app, "segment-group", "list").exit_code == 0


def test_segment_group_create_list_delete(app: Flask) -> None:
    result = run(app, "segment-group", "create", "newsletter", "--name", "Newsletter")
    assert result.exit_code == 0, result.output
    assert "Created segment group 'newsletter'" in result.output
    listing = run(app, "segment-group", "list")
    assert "newsletter\tNewsletter\t0 segments" in listing.output
    deleted = run(app, "segment-group", "delete", "newsletter", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "newsletter" not in run(app, "segment-group", "list").output


def test_delete_asks_for_confirmation(app: Flask) -> None:
    run(app, "segment-group", "create", "keepme")
    result = run(app, "segment-group", "delete", "keepme", input="n\n")
    assert result.exit_code == 1
    assert "not deleted" in result.output
    assert "keepme" in run(app, "segment-group", "list").output


def test_list_marks_protected_groups(app: Flask) -> None:
    run(app, "segment-group", "create", "shop", "--name", "Shop")
    assert "shop\tShop\t0 segments  [protected]" in run(app, "segment-group", "list").output


def test_bad_identifier_is_a_usage_error(app: Flask) -> None:
    result = run(app, "segment-group", "create", "Bad Id")
    assert result.exit_code == 2
    assert "lower-case letters" in result.output
    assert "No segment groups" in run(app, "segment-group", "list").output


def test_duplicate_group_fails_with_a_message(app: Flask) -> None:
    run(app, "segment-group", "create", "dup")
    result = run(app, "segment-group", "create", "dup")
    assert result.exit_code == 1
    assert "'dup' already exists" in result.output


def test_deleting_a_protected_group_is_refused(app: Flask) -> None:
    run(app, "segment-group", "create", "shop")
    result = run(app, "segment-group", "delete", "shop", "--yes")
    assert result.exit_code == 1
    assert "Cannot modify protected segment group" in result.output


def test_a_protected_group_is_refused_before_any_question(app: Flask) -> None:
    run(app, "segment-group", "create", "shop")
    result = app.test_cli_runner().invoke(args=["cdp", "segment-group", "delete", "shop"], input="y\n")
    assert result.exit_code == 1
    assert "Cannot modify protected segment group" in result.output
    assert "Delete segment group" not in result.output  # it did not ask first


def test_unknown_group_fails(app: Flask) -> None:
    result = run(app, "segment-group", "delete", "ghost", "--yes")
    assert result.exit_code == 1
    assert "'ghost' does not exist" in result.output


def test_missing_argument_is_a_usage_error(app: Flask) -> None:
    assert run(app, "segment-group", "create").exit_code == 2


def test_segments_lists_member_counts(app: Flask) -> None:
    with app.app_context():
        store = app.extensions["cdp"].store
        store.create_group("g")
        store.add_members("g", "vip", ["1", "2"], name="VIP")
        store.add_members("g", "solo", ["3"], name="Solo")
    result = run(app, "segments", "--group", "g")
    assert result.exit_code == 0
    assert "g/vip\tVIP\t2 members" in result.output
    assert "g/solo\tSolo\t1 member\n" in result.output
    with app.app_context():
        app.extensions["cdp"].store.create_group("one")
        app.extensions["cdp"].store.add_members("one", "x", ["1"])
    assert "one\tone\t1 segment\n" in run(app, "segment-group", "list").output
    assert run(app, "segments", "--group", "ghost").exit_code == 1


def test_check_reports_a_missing_group_then_a_healthy_setup(app: Flask) -> None:
    result = run(app, "check")
    assert result.exit_code == 1
    assert "segment group 'shop' (activation 'test-client') does not exist" in result.output
    run(app, "segment-group", "create", "shop")
    result = run(app, "check")
    assert result.exit_code == 0, result.output
    # Where the site is served is not known here (no SERVER_NAME, no GUNICORN_BIND): no port is made up.
    assert ("Base URL for the CDP activation: https://<your site>/cdp/webhook (run check with --site-url https://… to"
            " print it whole)") in result.output
    assert "5000" not in result.output
    assert ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"] not in result.output


def test_check_uses_the_given_site_url(app: Flask) -> None:
    run(app, "segment-group", "create", "shop")
    result = run(app, "check", "--site-url", "https://shop.example/")
    assert "Base URL for the CDP activation: https://shop.example/cdp/webhook" in result.output


def test_check_reports_missing_tables(make_app) -> None:
    app = make_app(create_tables=False, **ACTIVATION)
    result = run(app, "check")
    assert result.exit_code == 1
    assert "run flask cdp init-db" in result.output


def test_check_never_shows_stream_ids(make_app) -> None:
    app = make_app(CDP_USER_STREAM_ID="stream-id-secret", CDP_PRODUCT_STREAM_IDS={"pet_food": "food-stream-secret",
                                                                               "toys": "toys-stream-secret"},
                   **ACTIVATION)
    result = run(app, "check")
    assert "user stream id set" in result.output
    assert "product stream id not set; types with their own stream: pet_food, toys" in result.output
    assert "stream-id-secret" not in result.output and "stream-secret" not in result.output


def test_check_without_activation_fails(make_app) -> None:
    result = run(make_app(), "check")
    assert result.exit_code == 1
    assert "no activation configured" in result.output


def test_version_is_the_packages_one(tmp_path) -> None:
    """``flask cdp --version`` and the installed metadata say the version written once in
    cdp_bridge/version.py."""
    from importlib.metadata import version

    from cdp_bridge import __version__
    from tests.support.loopback import bare_app

    result = bare_app(tmp_path).test_cli_runner().invoke(args=["cdp", "--version"])
    assert result.exit_code == 0 and result.output == f"cdp_bridge {__version__}\n"
    assert version("cdp_bridge") == __version__


def test_worker_metrics_port_serves_the_queue_and_refuses_a_taken_port(app: Flask) -> None:
    import socket

    import requests

    from tests.support.metrics import value
    from tests.support.postgres_server import free_port

    port = free_port()
    result = run(app, "worker", "--once", "--metrics-port", str(port))
    assert result.exit_code == 0, result.output
    text = requests.get(f"http://127.0.0.1:{port}/", timeout=5).text  # the thread serves until the process ends
    assert value(text, "cdp_queue_depth") == 0 and "cdp_deliveries_applied_total" in text
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = run(app, "worker", "--once", "--metrics-port", str(busy))
    assert result.exit_code != 0 and f"--metrics-port {busy}: cannot listen on 127.0.0.1" in result.output
    assert run(app, "worker", "--metrics-port", "70000").exit_code == 2


def test_local_site_url_reads_gunicorn_bind() -> None:
    from cdp_bridge.cli.health import local_site_url

    assert local_site_url({}) is None
    assert local_site_url({"GUNICORN_BIND": "127.0.0.1:8000"}) == "http://127.0.0.1:8000"
    assert local_site_url({"GUNICORN_BIND": "0.0.0.0:8080"}) == "http://127.0.0.1:8080"
    assert local_site_url({"GUNICORN_BIND": "[::]:9000"}) == "http://[::1]:9000"
    assert local_site_url({"GUNICORN_BIND": "shop.internal:81,127.0.0.1:82"}) == "http://shop.internal:81"
    assert local_site_url({"GUNICORN_BIND": "unix:/run/shop.sock"}) is None


def test_check_warns_when_a_scheduled_export_has_no_stream_and_says_whether_signatures_are_required(
        app: Flask) -> None:
    settings = app.extensions["cdp"].settings
    app.extensions["cdp"].settings = replace(settings, export=replace(
        settings.export, schedule={"user": (ScheduledExport(interval="0 3 * * *", options="--no-draft"),)}))
    output = app.test_cli_runner().invoke(args=["cdp", "check"]).output
    assert ("WARN  CDP_EXPORT_SCHEDULE exports users, but CDP_USER_STREAM_ID is not set: every scheduled export will"
            " fail until it is") in output
    assert "note  webhook signatures not required" in output
    app.extensions["cdp"].settings = replace(settings, webhook=replace(
        settings.webhook, signing_secrets=(Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),)))
    assert "ok    webhook signatures required (1 signing secret(s))" in app.test_cli_runner().invoke(
        args=["cdp", "check"]).output


def test_check_env_file_passes_a_good_file_and_names_the_problem_of_a_bad_one(app: Flask, tmp_path) -> None:
    good, bad = tmp_path / "good.env", tmp_path / "bad.env"
    good.write_text("CDP_TRACKING_MODE=server\nCDP_ACCOUNT_NUMBER=123456\n")
    bad.write_text("CDP_TRACKING_MODE=sever\nCDP_TRAKING_MODE=server\n")
    passed = run(app, "check", "--env-file", str(good))
    assert passed.exit_code == 0 and passed.output == f"ok    {good}: settings valid\n"
    refused = run(app, "check", "--env-file", str(bad))
    assert refused.exit_code == 2
    assert (f"WARN  {bad}: unknown setting CDP_TRAKING_MODE (did you mean CDP_TRACKING_MODE?); it is ignored"
            in refused.output)
    assert (f"Error: {bad}: invalid cdp_bridge setting: CDP_TRACKING_MODE: expected one of client, server, hybrid"
            in refused.output)
    missing = run(app, "check", "--env-file", str(tmp_path / "nope.env"))
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_check_names_an_unknown_setting_with_the_closest_known_one(make_app, monkeypatch) -> None:
    monkeypatch.setenv("CDP_TRAKING_MODE", "server")
    app = make_app(CDP_SEGMENT_GROUP_IDENTIFER="shop", **ACTIVATION)
    output = run(app, "check").output
    assert "WARN  unknown setting CDP_TRAKING_MODE (did you mean CDP_TRACKING_MODE?); it is ignored" in output
    assert ("WARN  unknown setting CDP_SEGMENT_GROUP_IDENTIFER (did you mean CDP_SEGMENT_GROUP_IDENTIFIER?); it is"
            " ignored") in output


def test_check_reports_the_shared_cache_and_the_limit_storage(make_app, own_redis) -> None:
    app = make_app(CDP_CACHE_URL=own_redis.url, CDP_RATE_LIMIT_STORAGE_URI=own_redis.url, **ACTIVATION)
    run(app, "segment-group", "create", "shop")
    healthy = run(app, "check")
    assert healthy.exit_code == 0, healthy.output
    assert re.search(r"ok    shared cache \(CDP_CACHE_URL\): Redis answered in \d+\.\d ms", healthy.output)
    assert re.search(r"ok    rate-limit storage \(CDP_RATE_LIMIT_STORAGE_URI\): answered in \d+\.\d ms", healthy.output)
    own_redis.stop()
    down = run(app, "check")
    assert down.exit_code == 1
    assert "FAIL  shared cache (CDP_CACHE_URL): Redis cannot be reached (ConnectionError)" in down.output
    assert "FAIL  rate-limit storage (CDP_RATE_LIMIT_STORAGE_URI): it cannot be reached" in down.output


def test_check_says_when_the_cache_and_limits_are_each_processs_own(app: Flask) -> None:
    output = run(app, "check").output
    assert "note  shared cache off (CDP_CACHE_URL not set)" in output
    assert "note  rate limits: memory:// (each process counts for itself" in output


def test_send_test_activation_asks_where_the_site_is_rather_than_guess_a_port(app: Flask) -> None:
    result = run(app, "send-test-activation")
    assert result.exit_code == 2
    assert ("say where the site is served: --url http://HOST:PORT/cdp/webhook (or set SERVER_NAME or GUNICORN_BIND)"
            in result.output)


def test_the_commands_page_names_every_command_and_option() -> None:
    """docs/commands.md is complete: each command of the group, with each of its options."""
    from pathlib import Path

    import click

    from cdp_bridge.cli import cdp_cli

    page = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text()
    missing = []

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, f"{prefix} {name}")
                continue
            rows = [line for line in page.splitlines() if line.startswith(f"| `{prefix} {name}")]
            if not rows:
                missing.append(f"{prefix} {name}")
            for option in (p for p in command.params if isinstance(p, click.Option)):
                if not any(flag in row for row in rows for flag in option.opts):
                    missing.append(f"{prefix} {name} {option.opts[0]}")

    walk(cdp_cli, "flask cdp")
    assert missing == []
