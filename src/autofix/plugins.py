"""One registry shape for every extension point: triage rules, checks, optimizers, sandboxes.

Built-ins register with their room's decorator at import; plugins are installed distributions
that declare an entry point in the kind's group (``autofix.rules``, ``autofix.checks``,
``autofix.optimizers``, ``autofix.sandboxes``) naming a module that registers its objects the
same way. Entry points load lazily, on the first lookup that misses or on a full listing; a
plugin that fails to import becomes a warning (`Registry.warnings`), never a crash. Names of
plugin objects are namespaced ``dist/name``; a duplicate name is refused.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, Literal, TypeVar

__all__ = ["PluginKind", "Registry", "RegistryEntry"]

PluginKind = Literal["rule", "check", "optimizer", "sandbox"]
T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryEntry(Generic[T]):
    """A registered object with what names it in reports and caches."""

    name: str
    obj: T
    version: int = 1
    distribution: str | None = None  # None: built into autofix
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``name@version``: how verdicts, diagnoses and caches name what produced them."""
        return f"{self.name}@{self.version}"


class Registry(Generic[T]):
    """The members of one kind of extension point, by name."""

    def __init__(self, kind: PluginKind, group: str):
        self.kind = kind
        self.group = group
        self._entries: dict[str, RegistryEntry[T]] = {}
        self._plugins_loaded = False
        self._loading: str | None = None  # the distribution whose entry point is being imported
        self.warnings: list[str] = []

    def add(self, name: str, obj: T, *, version: int = 1, **metadata: Any) -> RegistryEntry[T]:
        """Register `obj` under `name` (``dist/name`` when a plugin registers it); duplicates are refused."""
        dist = self._loading or self._plugin_distribution(obj)
        full = f"{dist}/{name}" if dist and "/" not in name else name
        if full in self._entries:
            raise ValueError(f"a {self.kind} named {full!r} is already registered")
        entry = RegistryEntry(full, obj, version, dist, dict(metadata))
        self._entries[full] = entry
        return entry

    def _plugin_distribution(self, obj: object) -> str | None:
        """The distribution whose entry point of this group names `obj`'s package, when a plugin module is
        imported directly (before the entry points load), so its name is the same `dist/name` either way."""
        package = (getattr(obj, "__module__", "") or "").split(".")[0]
        if not package or package == "autofix":
            return None
        for ep in entry_points(group=self.group):
            if ep.value.split(":", 1)[0].split(".")[0] == package:
                return ep.dist.name if ep.dist is not None else ep.name
        return None

    def get(self, name: str) -> RegistryEntry[T]:
        """The entry named `name`; a miss loads the plugins once, then raises a KeyError listing what exists."""
        if name not in self._entries:
            self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"no {self.kind} named {name!r}; registered: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, *, plugins: bool = True) -> list[RegistryEntry[T]]:
        """Every entry, built-ins and (unless `plugins` is false) installed plugins."""
        if plugins:
            self.load_plugins()
        return list(self._entries.values())

    def __iter__(self) -> Iterator[RegistryEntry[T]]:
        return iter(self.entries())

    def load_plugins(self) -> None:
        """Import every entry point of this kind's group once; a failing plugin is a warning."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else ep.name
            self._loading = dist
            try:
                target = ep.value.split(":", 1)[0]
                importlib.import_module(target)
            except Exception as exc:  # a broken plugin must not stop a run
                msg = f"{self.kind} plugin {dist!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
                log.warning(msg)
                self.warnings.append(msg)
            finally:
                self._loading = None
