"""The configuration file, validated into typed models.

One YAML file, overridable by `WATCHDOG_*` environment variables (nested with `__`), with
secrets read from files or from systemd credentials. Every error names `path:line`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watchdog.durations import Duration
from watchdog.sourcefile import InvalidInput, Problem, SourceFile, load_yaml

Source = Literal["health", "nodes", "events", "hot_ranges"]
SOURCES: tuple[Source, ...] = ("health", "nodes", "events", "hot_ranges")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Intervals(StrictModel):
    health: Duration = timedelta(seconds=5)
    nodes: Duration = timedelta(seconds=10)
    events: Duration = timedelta(seconds=30)
    hot_ranges: Duration = timedelta(seconds=60)

    def of(self, source: Source) -> timedelta:
        interval: timedelta = getattr(self, source)
        return interval


class ClusterConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    urls: list[str] = Field(min_length=1)
    username: str = "root"
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_cert: Path | None = None
    tls_verify: bool = True
    intervals: Intervals = Intervals()
    timeout: Duration = timedelta(seconds=5)
    unreachable_after: int = Field(default=3, ge=1)

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(r"^https?://[^/\s]+/?$", url):
                raise ValueError(f"{url!r} is not an http(s)://host:port address")
        return [url.rstrip("/") for url in urls]

    def read_password(self) -> SecretStr | None:
        """The password inline, or from `password_file` (a plain name is a systemd credential)."""
        if self.password is not None or self.password_file is None:
            return self.password
        return SecretStr(read_secret_file(self.password_file).rstrip("\r\n"))


def read_secret_file(path: Path) -> str:
    """A secret file's text; a plain name (no folder) is a systemd credential
    (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and path.parent == Path():
        path = Path(credentials) / path
    return path.read_text(encoding="utf-8")


class ChannelConfig(StrictModel):
    urls: list[SecretStr] = []
    urls_file: Path | None = None
    """Apprise URLs, one a line, kept out of the config file: a path or a credential name."""
    format: Literal["text", "markdown", "html"] = "text"

    @model_validator(mode="after")
    def _some_urls(self) -> ChannelConfig:
        if not self.urls and self.urls_file is None:
            raise ValueError("a channel needs `urls` or `urls_file`")
        return self


class LabelMatchers(StrictModel):
    """`match` (equal values) and `match_re` (regular expressions) on alert labels; both
    empty matches every alert. Used by routes and by inhibit rules."""

    match: dict[str, str] = {}
    match_re: dict[str, re.Pattern[str]] = {}

    @field_validator("match_re", mode="before")
    @classmethod
    def _anchored(cls, value: Any) -> Any:
        """Anchor label regexes as Alertmanager does: `match_re: {zone: a|b}` is `^(?:a|b)$`."""
        if isinstance(value, dict):
            return {k: f"^(?:{v})$" if isinstance(v, str) else v for k, v in value.items()}
        return value


class RouteConfig(LabelMatchers):
    channels: list[str] = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] = ["cluster", "alertname"]
    group_wait: Duration = timedelta(0)
    group_interval: Duration = timedelta(minutes=1)
    repeat_interval: Duration = timedelta(hours=4)


class InhibitRule(StrictModel):
    """While a firing alert matches `source`, the firing alerts that match `target` and carry
    the same values of the `equal` labels are not notified (Alertmanager's inhibit_rules)."""

    source: LabelMatchers
    target: LabelMatchers = LabelMatchers()
    equal: list[str] = []


class FlappingConfig(StrictModel):
    """Nagios-style flap detection with hysteresis: an alert that changed state (fired or
    resolved) `high` times within `window` is flapping; it is stable again once no more
    than `low` changes remain within the window."""

    window: Duration = timedelta(minutes=15)
    high: int = Field(default=6, ge=2)
    low: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _low_below_high(self) -> FlappingConfig:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class HttpConfig(StrictModel):
    """The status server. Anywhere but loopback, a bearer token is required."""

    listen: str = Field(default="127.0.0.1:9184", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d+$")
    token: SecretStr | None = None
    token_file: Path | None = None
    """The bearer token in a file: a path or a credential name."""

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpConfig:
        if not self.loopback and self.token is None and self.token_file is None:
            raise ValueError(f"listening on {self.listen} (not loopback) needs `token` or "
                             "`token_file`: /metrics and /api would be open to the network")
        return self


class LogConfig(StrictModel):
    format: Literal["auto", "text", "json"] = "auto"
    """`auto`: journald's severity prefixes under systemd, timestamped text elsewhere."""


class HeartbeatConfig(StrictModel):
    url: SecretStr | None = None
    interval: Duration = timedelta(minutes=1)


class DeliveryConfig(StrictModel):
    """How hard the outbox tries: exponential backoff between attempts, capped."""

    retry_initial: Duration = timedelta(seconds=1)
    retry_max: Duration = timedelta(minutes=5)
    timeout: Duration = timedelta(seconds=10)
    fallback: str | None = None
    """A channel that also gets a notification still undelivered after `fallback_after`."""
    fallback_after: Duration = timedelta(minutes=10)


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="WATCHDOG_", env_nested_delimiter="__",
        populate_by_name=True,
    )

    clusters: list[ClusterConfig] = Field(min_length=1)
    rules: list[str] | None = None
    templates: Path | None = None
    channels: dict[str, ChannelConfig] = Field(min_length=1)
    routes: list[RouteConfig] = Field(min_length=1)
    state: Path = Path("/var/lib/crdb-watchdog/state.db")
    http: HttpConfig = HttpConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    log: LogConfig = LogConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    inhibit: list[InhibitRule] = []
    flapping: FlappingConfig | None = FlappingConfig()
    """`null` turns flap detection off."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the YAML file (passed as init values, so it comes last)."""
        return env_settings, init_settings

    @model_validator(mode="after")
    def _references_exist(self) -> Config:
        names = [cluster.name for cluster in self.clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster names must be unique, got {names}")
        for route in self.routes:
            unknown = [name for name in route.channels if name not in self.channels]
            if unknown:
                raise ValueError(f"route names unknown channels {unknown}; "
                                 f"defined: {sorted(self.channels)}")
        fallback = self.delivery.fallback
        if fallback is not None and fallback not in self.channels:
            raise ValueError(f"delivery.fallback names an unknown channel {fallback!r}; "
                             f"defined: {sorted(self.channels)}")
        return self


def load_config(path: Path) -> Config:
    """Read, validate and resolve a config file; InvalidInput lists every problem found."""
    source = load_yaml(path)
    if not isinstance(source.data, dict):
        raise InvalidInput([Problem(str(path), 1, "the config must be a YAML mapping")])
    try:
        config = Config(**source.data)
    except ValidationError as exc:
        raise InvalidInput(source.validation_problems(exc)) from None
    return _resolve_paths(config, path.parent, source)


def _resolve_paths(config: Config, base: Path, source: SourceFile) -> Config:
    """Relative paths in a config file are relative to that file, as users expect."""
    problems = []
    for index, cluster in enumerate(config.clusters):
        try:
            cluster.read_password()
        except OSError as exc:
            problems.append(source.problem(("clusters", index, "password_file"),
                                           f"cannot read password file: {exc.strerror}"))
    channels = {}
    for name, channel in config.channels.items():
        try:
            channels[name] = _with_file_urls(channel)
        except OSError as exc:
            problems.append(source.problem(("channels", name, "urls_file"),
                                           f"cannot read urls_file: {exc.strerror}"))
            continue
        if not channels[name].urls:
            problems.append(source.problem(("channels", name, "urls_file"),
                                           "urls_file holds no URL"))
    try:
        http = _with_file_token(config.http)
    except OSError as exc:
        problems.append(source.problem(("http", "token_file"),
                                       f"cannot read token_file: {exc.strerror}"))
    if problems:
        raise InvalidInput(problems)
    rules = None if config.rules is None else [
        pattern if Path(pattern).is_absolute() else str(base / pattern) for pattern in config.rules
    ]
    templates = None if config.templates is None else base / config.templates
    state = config.state if config.state.is_absolute() else base / config.state
    return config.model_copy(update={"rules": rules, "templates": templates, "state": state,
                                     "channels": channels, "http": http})


def _with_file_urls(channel: ChannelConfig) -> ChannelConfig:
    """The channel with the URLs of its `urls_file` (blank lines and `#` comments skipped)."""
    if channel.urls_file is None:
        return channel
    lines = (line.strip() for line in read_secret_file(channel.urls_file).splitlines())
    urls = [SecretStr(line) for line in lines if line and not line.startswith("#")]
    return channel.model_copy(update={"urls": [*channel.urls, *urls]})


def _with_file_token(http: HttpConfig) -> HttpConfig:
    if http.token is not None or http.token_file is None:
        return http
    token = read_secret_file(http.token_file).strip()
    return http.model_copy(update={"token": SecretStr(token)})
