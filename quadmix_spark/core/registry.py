"""A registry: the one name → class table of a kind of thing a user may add.

Each kind keeps its registry in the folder where it lives (proxy trainers in
``proxy/trainers.py``, online reweighting methods in ``mixing/reweighters.py``); config
validation, the command line and the jobs ask it, and no other file spells the names::

    REWEIGHTERS = Registry("reweighting method")
    REWEIGHTERS.register("tandem", "quadmix_spark.mixing.tandem:Tandem")  # imported on first use
    REWEIGHTERS.register("mine", Mine)                                    # or the class itself

    REWEIGHTERS.names()                         # ('tandem', 'mine'): registration order
    REWEIGHTERS.get("mine")                     # the class (a "module:Class" entry is imported now)
    REWEIGHTERS.check("nope", "reweight.methods")
    # ValueError: reweight.methods: unknown reweighting method 'nope' (tandem, mine)

A ``"module:Class"`` entry keeps an optional dependency (PyTorch for tinylm, TANDEM, DoReMi)
out of every process that only validates a config or lists the names. ``register`` without a
class is a decorator. Imports nothing of ours.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

__all__ = ["Registry"]


class Registry:
    """Names of one kind (e.g. ``"proxy trainer"``) → classes, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type | str] = {}

    def register(self, name: str, target: type | str | None = None) -> Any:
        """Register ``target`` (a class, or ``"module:Class"`` to import on first use) as ``name``.

        Without ``target``, a class decorator. Registering a name again with another target is
        an error (two classes under one name); the same target again is a no-op.
        """
        if target is None:

            def decorate(cls: type) -> type:
                self.register(name, cls)
                return cls

            return decorate
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if isinstance(target, str) and target.count(":") != 1:
            raise ValueError(f"{self.kind} {name!r}: a lazy entry is 'module:Class', got {target!r}")
        known = self._entries.get(name)
        if known is not None and _ref(known) != _ref(target):
            raise ValueError(f"{self.kind} {name!r} is registered already ({_ref(known)})")
        self._entries[name] = target
        return target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's or a plugin's entry that must not outlive it)."""
        self.check(name)
        del self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __delitem__(self, name: str) -> None:
        """``del registry[name]``: :meth:`unregister`, as a dict registry is emptied."""
        self.unregister(name)

    def check(self, name: str, key: str | None = None) -> str:
        """``name`` when registered, else a ValueError naming the config ``key`` and the known names."""
        if name not in self._entries:
            where = f"{key}: " if key else ""
            raise ValueError(f"{where}unknown {self.kind} {name!r} ({', '.join(self._entries)})")
        return name

    def get(self, name: str, key: str | None = None) -> type:
        """The class registered as ``name``, imported now when its entry is ``"module:Class"``."""
        self.check(name, key)
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
        return target


def _ref(target: type | str) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
