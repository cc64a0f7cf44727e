from datetime import timedelta
from pathlib import Path

import pytest

from watchdog.config import load_config
from watchdog.durations import format_duration, parse_duration
from watchdog.sourcefile import InvalidInput

VALID = """\
clusters:
  - name: prod-east
    urls: [http://127.0.0.1:8080/, http://127.0.0.1:8081]
    password: s3cret
    intervals: {nodes: 5s}
channels:
  oncall: {urls: ["json://127.0.0.1:9/hook"]}
routes:
  - match: {severity: critical}
    channels: [oncall]
    group_wait: 0s
state: state.db
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchdog.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("0s", 0)])
def test_durations_parse_operator_notation(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "10x", "m5", "5m 3s", "-1s"])
def test_invalid_durations_are_refused_with_the_units_named(text: str) -> None:
    with pytest.raises(ValueError, match="ms, s, m, h, d, w"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    assert format_duration(timedelta(seconds=5400.25)) == "1h30m250ms"
    assert parse_duration(format_duration(timedelta(hours=26))) == timedelta(hours=26)


def test_valid_config_is_resolved_relative_to_its_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    cluster = config.clusters[0]
    assert cluster.urls == ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
    assert cluster.intervals.nodes == timedelta(seconds=5)
    assert cluster.intervals.health == timedelta(seconds=5)
    assert config.state == tmp_path / "state.db"
    assert config.rules is None


def test_errors_name_file_line_and_field_all_at_once(tmp_path: Path) -> None:
    text = VALID.replace("intervals: {nodes: 5s}", "intervals: {nodes: 5 minutes}\n    colour: red")
    path = write(tmp_path, text)
    found = problems(path)
    assert f"{path}:5: clusters.0.intervals.nodes: Value error, invalid duration" in found[0]
    assert found[1] == f"{path}:6: clusters.0.colour: unknown key"


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("channels:\n", "channels: [\n", 1))
    assert problems(path)[0].startswith(f"{path}:")
    assert "invalid YAML" in problems(path)[0]


def test_duplicate_keys_are_refused_not_silently_merged(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "state: other.db\n")
    assert problems(path) == [f"{path}:13: duplicate key 'state'"]


def test_route_naming_an_unknown_channel_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("channels: [oncall]", "channels: [oncall, pager]"))
    assert "unknown channels ['pager']" in problems(path)[0]


def test_missing_password_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("password: s3cret", "password_file: /nonexistent/pw"))
    assert problems(path) == [f"{path}:4: cannot read password file: No such file or directory"]


def test_password_file_by_plain_name_reads_the_systemd_credential(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "crdb-password").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    config = load_config(write(tmp_path, VALID.replace("password: s3cret",
                                                       "password_file: crdb-password")))
    secret = config.clusters[0].read_password()
    assert secret is not None and secret.get_secret_value() == "from-credential"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_HTTP__LISTEN", "127.0.0.1:9999")
    assert load_config(write(tmp_path, VALID)).http.listen == "127.0.0.1:9999"


def test_secrets_do_not_appear_in_the_config_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert "s3cret" not in repr(config)
    assert "json://127.0.0.1:9/hook" not in repr(config)
