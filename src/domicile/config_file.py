"""Reading configuration files (topology, catalog, policy configuration): shared, pure.

Each configuration module parses its own TOML shape; what they share is here: reading
a file or a packaged default as UTF-8 text, quoting user input safely in messages,
and a reader whose errors name the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from importlib import resources
from pathlib import Path
from typing import NoReturn

from domicile.errors import ConfigError

SHOWN_CHARS = 64


def shown(text: object, limit: int = SHOWN_CHARS) -> str:
    """Return user input made safe to quote in a message: short, escaped, no backticks."""
    if not isinstance(text, str):
        return f"<{type(text).__name__}>"
    clipped = text[:limit].replace("`", "'")
    clipped = clipped.encode("ascii", "backslashreplace").decode("ascii")
    return clipped + ("…" if len(text) > limit else "")


def read_config_text(
    path: Path | None, *, package: str, default: str, what: str, error: type[ConfigError]
) -> tuple[str, str]:
    """Return (text, source) of `path`, or of the packaged `default` when `path` is None."""
    if path is None:
        return resources.files(package).joinpath(default).read_text(encoding="utf-8"), default
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"cannot read {what} `{path}`: {reason.lower()}") from exc
    try:
        return data.decode("utf-8"), str(path)
    except UnicodeDecodeError as exc:
        raise error(f"{what} `{path}` is not UTF-8 text") from exc


class TomlReader:
    """Typed access to a parsed TOML document; every error names the file."""

    what = "configuration"
    error: type[ConfigError] = ConfigError

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> NoReturn:
        """Raise the module's error for this file."""
        raise self.error(f"{self.what} `{self.source}`: {message}")

    def keys(self, table: Mapping[str, object], allowed: Set[str], where: str) -> None:
        """Refuse keys that are not in `allowed`."""
        for key in table:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(f"unknown key `{shown(key)}` in {where} (known: {known})")
