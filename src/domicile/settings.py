"""All settings of a Domicile process: one typed class, read from `DOMICILE_*` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_RECOVERY_IDLE = 300.0
"""Seconds a registration or relocation must be idle before recovery takes it over."""


class Settings(BaseSettings):
    """Settings of the gateway and CLI; every field can be set as `DOMICILE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="DOMICILE_", extra="forbid")

    data_dir: Path = Field(Path("domicile-data"), description="where SQLite files and keys live")
    topology_file: Path | None = Field(None, description="topology TOML; built-in default if unset")
    catalog_file: Path | None = Field(None, description="data catalog TOML; built-in if unset")
    policy_file: Path | None = Field(None, description="Cedar policies; built-in if unset")
    policy_schema_file: Path | None = Field(None, description="Cedar schema; built-in if unset")
    policy_config_file: Path | None = Field(
        None, description="purposes, countries of concern, security entities, approval steps"
    )
    storage_url: str | None = Field(
        None,
        description=(
            "postgresql://… to keep every region, the directory and principals in PostgreSQL "
            "(one schema each); unset: the topology's own storage urls (SQLite by default)"
        ),
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1_048_576, gt=0, description="largest request body accepted")
    max_field_bytes: int = Field(65_536, gt=0, description="largest single field value accepted")
    max_batch_ids: int = Field(1000, gt=0, description="most subjects in one batchGet")
    log_origin: str = Field(
        "domicile.local/log",
        pattern=r"^[a-z0-9][a-z0-9.-]*(/[a-z0-9._-]+)*$",
        description="origin prefix of the region logs; each log's origin is `<prefix>/<region>`",
    )
    checkpoint_interval: float = Field(1.0, gt=0, description="seconds between checkpoints")
    recovery_idle: float = Field(
        DEFAULT_RECOVERY_IDLE,
        ge=0,
        description="seconds a registration or relocation must be idle before recovery undoes"
        " or finishes it (another process on the same directory may own a recent one); swept"
        " at start and every as many seconds; 0: everything at start, no sweeps. A"
        " registration in flight touches its reservations every quarter of it (at least every"
        " 15 s), so only a crashed one goes idle; processes sharing a directory with a window"
        " under a minute should use the same value",
    )
    witnesses: list[str] = Field(
        default_factory=list,
        description="witnesses that cosign every checkpoint: `URL VERIFIER-KEY` each"
        " (C2SP tlog-witness; e.g. a `domicile monitor`)",
    )
    thresholds_file: Path | None = Field(
        None, description="bulk-transfer thresholds TOML; built-in (28 CFR part 202) if unset"
    )
    export_min_k: int = Field(
        5, ge=2, description="smallest k a dataset export must be k-anonymous for"
    )
    export_page_size: int = Field(
        500, gt=0, le=10_000, description="subjects read per page during a dataset export"
    )
    export_workers: int = Field(
        2,
        ge=0,
        le=64,
        description="worker processes that transform the pages of a dataset"
        " export of 20,000 subjects or more (0: a thread of the gateway)",
    )
