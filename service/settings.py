"""Service settings: ``HOTLINE_*`` environment variables, unsafe combinations refused."""

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from classifier.model import MAX_PLACE_HINT
from service.auth import key_weakness

MAX_TOP_K = 50  # the library's bound (classifier.model._check_top_k)
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


# -- settings -------------------------------------------------------------------------------------------------
class ServiceSettings(BaseSettings):
    """Service settings, read from ``HOTLINE_<NAME>`` environment variables; unsafe combinations are refused."""

    # hide_input_in_errors: a refusal must not print the keys or the database password it was given
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", protected_namespaces=(), extra="ignore",
                                      hide_input_in_errors=True)

    model_store: Path = Field(default=Path("models"), description="the model store folder")
    admin_api_key: SecretStr | None = Field(default=None, description="enables /admin/*; a strong key (at least "
                                            "16 characters, not a run, a sequence or a placeholder)")
    api_key: SecretStr | None = Field(default=None, description="when set, every route but /health, /ready and "
                                      "/docs requires it (also /metrics, unless METRICS_API_KEY is set)")
    metrics_api_key: SecretStr | None = Field(default=None, description="when set, /metrics requires this key "
                                              "(X-API-Key or Authorization: Bearer) instead of the API key")
    allow_unauthenticated: bool = Field(default=False, description="serve on a non-loopback host without "
                                        "HOTLINE_API_KEY (behind a proxy that authenticates); refused otherwise")
    # JSON settings are decoded by their validators (NoDecode), so a malformed value is a clear refusal
    thresholds: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict, description="per-target "
                                                              'review thresholds, JSON: {"agency": 0.3}')
    default_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    max_text_length: int = Field(default=10_000, ge=1, le=1_000_000)
    max_batch_size: int = Field(default=1_000, ge=1, le=100_000)
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    header_timeout_seconds: float = Field(default=10.0, gt=0.0, le=600.0, description="a connection that has not "
                                          "sent a request's complete headers this long after it opened (or after "
                                          "the request's first byte) is closed")
    body_timeout_seconds: float = Field(default=30.0, gt=0.0, le=3600.0, description="a request body not "
                                        "complete this long after its headers gets 408 and its connection is "
                                        "closed")
    reload_timeout_seconds: float = Field(default=60.0, gt=0.0, le=3600.0, description="with several workers, "
                                          "how long POST /admin/reload waits for every worker to switch before "
                                          "it answers 202 (switch in progress)")
    threads: int = Field(default=4, ge=1, le=256, description="threads per worker running batch predictions "
                         "and the other sync routes (single /predict runs in the event loop); more only adds GIL "
                         "contention for this CPU-bound work")
    default_place: str | None = Field(default=None, max_length=MAX_PLACE_HINT, description="the place hint of "
                                      "requests that send none (a county-level hotline: its county; a city's: its "
                                      "city); needs a routing model that knows the place")
    train_demo_if_empty: bool = Field(default=True, description="train the Ningxia demo model into an empty "
                                      "store at start-up")
    strict_versions: bool = Field(default=False, description="refuse models trained with other library versions")
    log_texts: bool = Field(default=False, description="DEBUG ONLY: put complaint texts in the request log")
    decision_log: bool = Field(default=True, description="record every prediction and take corrections "
                               "(POST /feedback, GET /quality); off: neither")
    decision_log_url: SecretStr | None = Field(default=None, description="the decision log's database: "
                                               "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB "
                                               "(several replicas sharing one log); default: decisions.sqlite "
                                               "in the model store")
    decision_log_texts: bool = Field(default=False, description="store each decision's text, masked, in the "
                                     "log (for retraining from corrections); personal data: kept "
                                     "DECISION_LOG_TEXT_RETENTION_DAYS")
    decision_log_text_retention_days: int = Field(default=30, ge=1, le=3650, description="stored texts older "
                                                  "than this are blanked (hourly)")
    decision_log_max_pending: int = Field(default=100_000, ge=100, le=10_000_000, description="decisions held "
                                          "in memory while the database is unavailable; beyond, the oldest are "
                                          "counted as lost")
    decision_log_timeout_seconds: float = Field(default=5.0, gt=0.0, le=60.0, description="how long a write "
                                                "waits for the database (a SQLite lock, a PostgreSQL "
                                                "connection) before the log counts as degraded")
    decision_log_interval_seconds: float = Field(default=0.2, ge=0.01, le=10.0, description="how often the "
                                                 "writer writes what is pending (measured with the "
                                                 "thread writer at 900 requests/s: 1 s batches added 8.8 ms to "
                                                 "the p99 against 3.6 at 0.2 s; 0.05 s batches cost the writer "
                                                 "80 % more CPU)")
    decision_log_writer: Literal["process", "thread"] = Field(default="process", description="where decisions "
                                                             "are written: a child process of each worker "
                                                             "(measured at 800 requests/s: p99 +0.6 to +1.95 ms "
                                                             "with the log on) or a thread of the worker (+3.3 "
                                                             "to +5.7 ms: its Python work holds the interpreter "
                                                             "lock that requests wait for)")
    decision_log_drift_sample: float = Field(default=0.02, ge=0.0, le=1.0, description="share of decisions "
                                             "whose tokens are checked against the vocabulary (drift)")
    quality_windows: Annotated[list[int], NoDecode] = Field(default=[7, 30], min_length=1, max_length=5,
                                                            description="days of the live-quality windows, "
                                                            "JSON: [7, 30]")
    quality_refresh_seconds: float = Field(default=60.0, ge=5.0, le=86_400.0, description="how often /metrics' "
                                           "live-quality gauges are recomputed")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds_json(cls, value: Any) -> Any:
        return _json_setting(value, "HOTLINE_THRESHOLDS", dict, 'an object such as {"agency": 0.3}')

    @field_validator("quality_windows", mode="before")
    @classmethod
    def _windows_json(cls, value: Any) -> Any:
        return _json_setting(value, "HOTLINE_QUALITY_WINDOWS", list, "an array of days such as [7, 30]")

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {t: v for t, v in value.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"review thresholds must be probabilities from 0 to 1, got {bad}")
        return value

    @field_validator("quality_windows")
    @classmethod
    def _windows_in_range(cls, value: list[int]) -> list[int]:
        if any(not 1 <= w <= 366 for w in value):
            raise ValueError(f"quality windows are days from 1 to 366, got {value}")
        return sorted(set(value))

    def decision_log_address(self) -> str:
        """The decision log's database URL (the setting, or the SQLite file in the model store)."""
        from live.db import default_url

        if self.decision_log_url is not None:
            return self.decision_log_url.get_secret_value()
        return default_url(self.model_store)

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> "ServiceSettings":
        for name in ("admin_api_key", "api_key", "metrics_api_key"):
            key = getattr(self, name)
            weakness = key_weakness(key.get_secret_value()) if key is not None else None
            if weakness is not None:
                raise ValueError(f"HOTLINE_{name.upper()} {weakness}; generate a random key, e.g. "
                                 "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        if (self.admin_api_key is not None and self.api_key is not None
                and self.admin_api_key.get_secret_value() == self.api_key.get_secret_value()):
            raise ValueError("HOTLINE_ADMIN_API_KEY equals HOTLINE_API_KEY: every client could reload models; "
                             "use a separate admin key")
        if (self.admin_api_key is not None and self.metrics_api_key is not None
                and self.admin_api_key.get_secret_value() == self.metrics_api_key.get_secret_value()):
            raise ValueError("HOTLINE_ADMIN_API_KEY equals HOTLINE_METRICS_API_KEY: the metrics scraper could "
                             "reload models; use a separate admin key")
        if self.log_texts and not is_loopback(self.host):
            raise ValueError(f"HOTLINE_LOG_TEXTS=true writes complaint texts (personal data) to the log; it is "
                             f"only allowed on a loopback host, not {self.host!r}")
        if self.api_key is None and not self.allow_unauthenticated and not is_loopback(self.host):
            raise ValueError(
                f"HOTLINE_HOST={self.host!r} is reachable from other machines and HOTLINE_API_KEY is not set: anyone "
                "there could read predictions, the model and live quality, and send corrections. Set "
                "HOTLINE_API_KEY, or HOTLINE_ALLOW_UNAUTHENTICATED=true if a proxy in front authenticates every "
                "request, or listen on 127.0.0.1")
        return self

    def security_warnings(self) -> list[str]:
        """What the operator should hear loudly at start-up (the service still starts)."""
        out = []
        if self.api_key is None and not is_loopback(self.host):
            out.append(f"UNAUTHENTICATED: listening on {self.host!r} without HOTLINE_API_KEY "
                       "(HOTLINE_ALLOW_UNAUTHENTICATED=true): every route is open to whoever reaches this port; "
                       "make sure the proxy in front authenticates")
        return out


def _json_setting(value: Any, name: str, kind: type, expected: str) -> Any:
    """A JSON setting's environment string decoded, or a refusal that says what is wrong and what is expected."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON ({exc.msg} at character {exc.pos}); expected {expected}") \
            from None
    if not isinstance(decoded, kind):
        got = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "true or false"}.get(type(decoded), "null")
        raise ValueError(f"{name} is {got}; expected {expected}")
    return decoded


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

