"""Settings are declared once: each field carries its variable and description, `from_env` reads exactly those
variables (and nothing else), and a value that cannot be read stops the process naming the variable."""

from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path
from typing import Any

import pytest

from core.settings import REPO_ROOT, InvalidSetting, Settings, Variable, as_text, markdown_table, variables
from models.cities import City
from ops.cli import main
from ops.seed import demo_cities

README = REPO_ROOT / "README.md"


def test_every_setting_has_its_own_variable_and_a_description() -> None:
    assert [v.field for v in variables()] == [f.name for f in fields(Settings)]
    names = [v.name for v in variables()]
    assert len(set(names)) == len(names)
    for variable in variables():
        assert variable.name.startswith("FEASTFLOW_") and variable.name.isupper()
        assert variable.description.strip() and "\n" not in variable.description, variable.name


def test_variables_named_apart_from_their_field_keep_their_names() -> None:
    named = {v.field: v.name for v in variables()}
    assert named["kafka_bootstrap"] == "FEASTFLOW_KAFKA"
    assert named["data_dir"] == "FEASTFLOW_DATA"
    assert named["admin_rate_per_second"] == "FEASTFLOW_ADMIN_RATE"
    assert named["order_rate_per_second"] == "FEASTFLOW_ORDER_RATE"
    assert named["read_rate_per_second"] == "FEASTFLOW_READ_RATE"
    assert named["broker_max_poll_records"] == "FEASTFLOW_MAX_POLL_RECORDS"
    assert named["sse_ping_s"] == "FEASTFLOW_SSE_PING_S"


def test_an_empty_environment_gives_the_defaults(tmp_path: Path) -> None:
    # A data folder of its own: the default one may hold the local stack's signing secret.
    assert Settings.from_env({"FEASTFLOW_DATA": str(tmp_path)}) == replace(Settings(), data_dir=tmp_path)
    assert all(v.default == getattr(Settings(), v.field) for v in variables())


def _another_value(default: Any) -> Any:
    if isinstance(default, bool):
        return not default
    if isinstance(default, int | float):
        return default + 7
    if isinstance(default, Path):
        return default / "elsewhere"
    if isinstance(default, tuple):
        return (City("par", "Paris", "EUR"), City("nyc", "New York", "USD"))
    return f"{default}-changed"


@pytest.mark.parametrize("variable", variables(), ids=lambda v: v.name)
def test_each_variable_sets_its_setting_and_only_that(variable: Variable, tmp_path: Path) -> None:
    value = _another_value(variable.default)
    base = {"FEASTFLOW_DATA": str(tmp_path)}
    read, default = Settings.from_env({**base, variable.name: as_text(value)}), Settings.from_env(base)
    assert getattr(read, variable.field) == value
    assert replace(read, **{variable.field: getattr(default, variable.field)}) == default


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("FEASTFLOW_PARTITIONS", "abc"),
        ("FEASTFLOW_SSE_PING_S", "soon"),
        ("FEASTFLOW_STATIC_MEMBERSHIP", "yes"),
        ("FEASTFLOW_CITIES", "blr:Bengaluru"),
        ("FEASTFLOW_CITIES", "blr:Bengaluru:INR:soon"),
    ],
)
def test_a_value_that_cannot_be_read_names_its_variable(name: str, text: str) -> None:
    with pytest.raises(InvalidSetting, match=f"^{name}='{text}': "):
        Settings.from_env({name: text})


def test_a_bad_value_stops_the_command_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEASTFLOW_PARTITIONS", "abc")
    assert main(["releases"]) == 2
    assert "FEASTFLOW_PARTITIONS='abc'" in capsys.readouterr().err


def test_the_demo_serves_32_cities_with_menus_and_a_city_can_be_listed_as_launching() -> None:
    defaults = Settings.from_env({})
    assert len(defaults.cities) == 32 and not any(city.launching for city in defaults.cities)
    assert len(set(defaults.city_codes)) == 32
    listed = Settings.from_env({"FEASTFLOW_CITIES": "blr:Bengaluru:INR,oslo:Oslo:NOK:launching"}).cities
    assert listed == (City("blr", "Bengaluru", "INR"), City("oslo", "Oslo", "NOK", launching=True))
    assert listed[1].as_json() == {"city": "oslo", "name": "Oslo", "currency": "NOK", "launching": True}
    assert demo_cities(listed) == ("blr",) and demo_cities(defaults.cities) == defaults.city_codes


def test_static_membership_is_on_only_for_1() -> None:
    assert Settings.from_env({"FEASTFLOW_STATIC_MEMBERSHIP": "1"}).static_membership
    assert not Settings.from_env({"FEASTFLOW_STATIC_MEMBERSHIP": "0"}).static_membership


def test_the_signing_secret_falls_back_to_the_first_key_then_the_local_file(tmp_path: Path) -> None:
    (tmp_path / "jwt-secret").write_text("from-the-file\n")
    data = {"FEASTFLOW_DATA": str(tmp_path)}
    keys = {"FEASTFLOW_JWT_KEYS": "new:first-key, old:second-key"}
    assert Settings.from_env({**data, **keys, "FEASTFLOW_JWT_SECRET": "explicit"}).jwt_secret == "explicit"
    assert Settings.from_env({**data, **keys}).jwt_secret == "first-key"
    assert Settings.from_env(data).jwt_secret == "from-the-file"
    assert Settings.from_env({"FEASTFLOW_DATA": str(tmp_path / "none")}).jwt_secret == ""


def test_keywords_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEASTFLOW_PARTITIONS", "3")
    assert Settings().partitions == Settings(namespace="x").partitions == 6
    assert Settings.from_env().partitions == 3


def test_settings_are_frozen_values() -> None:
    settings = Settings(namespace="ns")
    with pytest.raises(FrozenInstanceError):
        settings.namespace = "other"  # type: ignore[misc]
    assert settings == Settings(namespace="ns") and hash(settings) == hash(Settings(namespace="ns"))


def test_the_readme_lists_every_variable_as_the_code_declares_it() -> None:
    readme = README.read_text()
    start = readme.index("<!-- settings table: python -m core.settings -->\n")
    table = readme[readme.index("\n", start) + 1 : readme.index("\n<!-- end of settings table -->")]
    assert table == markdown_table(), "the README's settings table is stale: run `python -m core.settings`"
