"""Typed reading of a TOML table, with errors that name the file, the key and the fix.

The spec parser reads every table through :class:`Table`, which rejects unknown
keys as soon as it is made, suggesting the nearest valid one ("did you mean
'exclude-newer'?"), before any "missing key" error could hide the typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from envbuild.errors import SpecError


class Table:
    """A TOML table at a dotted ``path`` inside ``file``, read key by key."""

    def __init__(self, data: Mapping[str, Any], *, file: Path, path: str, allowed: tuple[str, ...]):
        self._data = data
        self.file = file
        self.path = path
        self._allowed = allowed
        # Unknown keys first: a misspelt required key should read "did you mean", not "missing".
        self._reject_unknown()

    def key(self, name: str) -> str:
        """The dotted name of ``name`` in this table, for messages."""
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str, hint: str) -> NoReturn:
        """Raise a :class:`SpecError` about key ``name``."""
        raise SpecError(f"{self.file}: {self.key(name)}: {problem}", hint=hint)

    def _reject_unknown(self) -> None:
        """Reject keys this table does not know, suggesting the nearest known one."""
        for name in self._data:
            if name in self._allowed:
                continue
            near = difflib.get_close_matches(name, self._allowed, n=1, cutoff=0.5)
            valid = ", ".join(self._allowed)
            hint = f"did you mean '{near[0]}'? " if near else ""
            self.fail(name, "unknown key", f"{hint}valid keys here: {valid}")

    def has(self, name: str) -> bool:
        """Whether ``name`` is present."""
        return name in self._data

    def raw(self, name: str) -> Any:
        """The value of ``name`` as parsed, or None."""
        assert name in self._allowed, name
        return self._data.get(name)

    def text(self, name: str, *, default: str | None = None, example: str = "...") -> str | None:
        """A string value."""
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.fail(name, f"expected a non-empty string, got {_show(value)}", f'write {name} = "{example}"')
        return value.strip()

    def flag(self, name: str, *, default: bool) -> bool:
        """A boolean value."""
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(name, f"expected true or false, got {_show(value)}", f"write {name} = {str(default).lower()}")
        return value

    def strings(self, name: str, *, example: str = '"..."') -> tuple[str, ...]:
        """A list of strings (empty when absent)."""
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(name, f"expected a list of non-empty strings, got {_show(value)}", f"write {name} = [{example}]")
        return tuple(v.strip() for v in value)

    def table(self, name: str, allowed: tuple[str, ...]) -> Table | None:
        """A sub-table, or None when absent."""
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(name, f"expected a table, got {_show(value)}", f"write it as [{self.key(name)}]")
        return Table(value, file=self.file, path=self.key(name), allowed=allowed)

    def mapping(self, name: str) -> dict[str, Any]:
        """A free-form table (keys chosen by the user), empty when absent."""
        value = self.raw(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(name, f"expected a table, got {_show(value)}", f'write it as {name} = {{ key = "value" }}')
        return dict(value)

    def tables(self, name: str, allowed: tuple[str, ...]) -> Iterator[Table]:
        """An array of tables (``[[name]]``)."""
        value = self.raw(name)
        if value is None:
            return
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(
                name, f"expected an array of tables, got {_show(value)}", f"write each entry as [[{self.key(name)}]]"
            )
        for i, item in enumerate(value):
            yield Table(item, file=self.file, path=f"{self.key(name)}[{i}]", allowed=allowed)


def _show(value: Any) -> str:
    kind = type(value).__name__
    text = repr(value)
    return f"{kind} {text[:60]}"
