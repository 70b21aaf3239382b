"""Registering the extension: app factory, several apps, the host's db, Flask-Migrate."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import Migrate, upgrade
from flask_migrate import init as migrate_init
from flask_migrate import migrate as migrate_revision
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import inspect
from sqlalchemy.orm import Mapped, mapped_column

from cdp_bridge import CDP, CDPState, ConfigurationError


def new_app(url: str, **config) -> Flask:
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI=url, **config)
    return app


def test_state_is_kept_in_app_extensions(database_url: str) -> None:
    app = new_app(database_url)
    cdp = CDP(app)
    state = app.extensions["cdp"]
    assert isinstance(state, CDPState)
    assert state.hooks is cdp.hooks  # what the decorators register, shared by every app of this CDP
    assert not hasattr(cdp, "app")


def test_a_second_registration_is_refused_with_what_to_do(database_url: str) -> None:
    app = new_app(database_url)
    cdp = CDP(app)
    with pytest.raises(RuntimeError, match="already registered.*init_app once per app"):
        cdp.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        CDP(app)


def test_app_factory_pattern_and_two_apps_in_one_process(tmp_path: Path) -> None:
    cdp = CDP()

    def create_app(name: str, group: str) -> Flask:
        app = new_app(f"sqlite:///{tmp_path}/{name}.sqlite3")
        cdp.init_app(app)
        with app.app_context():
            cdp.create_tables()
            cdp.store.create_group(group)
        return app

    first, second = create_app("one", "first_group"), create_app("two", "second_group")
    with first.app_context():
        assert [g.identifier for g in cdp.store.list_groups()] == ["first_group"]
    with second.app_context():
        assert [g.identifier for g in cdp.store.list_groups()] == ["second_group"]


def test_own_database_defaults_to_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("g")
    assert (tmp_path / "instance" / "cdp_bridge.sqlite3").exists()


def test_tables_live_on_the_hosts_db(database_url: str) -> None:
    app = new_app(database_url)
    db = SQLAlchemy(app)
    CDP(app, db=db)
    assert "cdp_memberships" in db.metadata.tables
    with app.app_context():
        db.create_all()
        assert {"cdp_segment_groups", "cdp_segments", "cdp_memberships", "cdp_deliveries"} <= set(
            inspect(db.engine).get_table_names()
        )


def test_an_apps_registered_db_is_used_when_none_is_passed(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    db = SQLAlchemy(app)
    CDP(app)
    assert app.extensions["cdp"].db is db
    assert "cdp_segments" in db.metadata.tables


def test_a_db_not_registered_on_the_app_is_refused(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    with pytest.raises(ConfigurationError, match=r"db.init_app\(app\)"):
        CDP(app, db=SQLAlchemy())


def test_blueprint_is_mounted_at_cdp_by_default(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    CDP(app)
    assert "cdp" in app.blueprints
    assert app.extensions["cdp"].url_prefix == "/cdp"


def test_site_can_place_the_blueprint_itself(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    cdp = CDP(app, register_blueprint=False)
    assert "cdp" not in app.blueprints
    app.register_blueprint(cdp.blueprint, url_prefix="/integrations/cdp")
    assert app.extensions["cdp"].url_prefix == "/integrations/cdp"


def test_python_api_segments_for_and_is_in_segment(sqlite_url: str) -> None:
    app = new_app(sqlite_url)
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("g")
        cdp.store.add_members("g", "vip", ["1"], name="VIP")
        assert [s.name for s in cdp.segments_for("1")] == ["VIP"]
        assert cdp.is_in_segment("1", "g/VIP")
        assert not cdp.is_in_segment("2", "VIP")


@pytest.fixture
def keep_loggers_enabled():
    """Alembic's env.py runs logging.config.fileConfig, which disables existing loggers:
    every logger enabled before (cdp_bridge's, urllib3's…) is enabled again after, so the
    rest of the session's log checks still hear them."""
    import logging

    enabled = [logger for logger in logging.Logger.manager.loggerDict.values()
               if isinstance(logger, logging.Logger) and not logger.disabled]
    yield
    for logger in enabled:
        logger.disabled = False


@pytest.mark.usefixtures("keep_loggers_enabled")
@pytest.mark.parametrize("cdp_first", [True, False], ids=["cdp-tables-exist", "new-database"])
def test_a_hosts_flask_migrate_leaves_the_cdp_tables_to_upgrade_db(database_url: str, tmp_path: Path, cdp_first: bool) -> None:
    """With ``include_object=leave_cdp_tables_out``, the host's ``flask db migrate`` makes
    a migration of its own model only: no operation names a cdp_* table, whether
    cdp_bridge's tables exist already (at the newest revision, with their version table)
    or not yet; and ``flask cdp init-db`` after the host's upgrade still makes them."""
    from cdp_bridge import leave_cdp_tables_out

    app = new_app(database_url)
    db = SQLAlchemy(app)

    class Customer(db.Model):  # the host's own model, beside cdp's tables
        id: Mapped[int] = mapped_column(primary_key=True)

    cdp = CDP(app, db=db)
    Migrate(app, db, include_object=leave_cdp_tables_out)
    directory = str(tmp_path / "migrations")
    with app.app_context():
        if cdp_first:
            cdp.create_tables()
        migrate_init(directory)
        migrate_revision(directory, message="initial")
        (script,) = (Path(directory) / "versions").glob("*.py")
        text = script.read_text()
        assert "'customer'" in text and "cdp_" not in text, text
        upgrade(directory)
        assert cdp.create_tables() == []  # at the newest revision: made at once, or already there
        names = set(inspect(db.engine).get_table_names())
        assert {"customer", "cdp_memberships", "cdp_alembic_version", "alembic_version"} <= names
        db.engine.dispose()
