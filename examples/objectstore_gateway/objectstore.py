"""A plain key-value object store interface, and an in-memory implementation of it.

This is the shape a OneOS ObjectStore (or S3, R2, etcd, FoundationDB, a
Durable Object's storage …) offers: bytes under string keys, listing by key
prefix, and one atomic multi-key write that can be made conditional on the
versions the writer read — optimistic concurrency, so two writers that raced
cannot both win.  Nothing here knows about the CRM.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Protocol

#: A key's version: changes on every write of that key.
Version = int


class VersionMismatch(Exception):
    """``put_many`` found a key whose version is not the expected one; nothing was written."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"changed meanwhile: {', '.join(keys)}")
        self.keys = keys


class ObjectStore(Protocol):
    """Bytes under string keys."""

    async def get(self, key: str) -> tuple[bytes, Version] | None:
        """The value and version of ``key``, or ``None`` when absent."""
        ...

    async def put(self, key: str, value: bytes) -> Version:
        """Write one key unconditionally; return its new version."""
        ...

    async def delete(self, key: str) -> None:
        """Remove one key (absent keys are fine)."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, in ascending order."""
        ...

    async def put_many(
        self,
        changes: Mapping[str, bytes | None],
        expect: Mapping[str, Version | None] | None = None,
    ) -> None:
        """Apply every change (``None`` deletes) atomically — all or nothing.

        Each ``expect`` entry is a precondition: the key must currently have
        that version (``None``: must be absent).  If any fails,
        :class:`VersionMismatch` is raised and nothing is written.
        """
        ...


class InMemoryObjectStore:
    """An :class:`ObjectStore` in a dict (keys kept sorted for prefix listing)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, Version]] = {}
        self._keys: list[str] = []
        self._clock = 0

    async def get(self, key: str) -> tuple[bytes, Version] | None:
        """The value and version of ``key``."""
        return self._data.get(key)

    async def put(self, key: str, value: bytes) -> Version:
        """Write one key."""
        await self.put_many({key: value})
        return self._data[key][1]

    async def delete(self, key: str) -> None:
        """Remove one key."""
        await self.put_many({key: None})

    async def list(self, prefix: str) -> list[str]:
        """Keys with ``prefix``, ascending."""
        start = bisect.bisect_left(self._keys, prefix)
        out = []
        for key in self._keys[start:]:
            if not key.startswith(prefix):
                break
            out.append(key)
        return out

    async def put_many(
        self,
        changes: Mapping[str, bytes | None],
        expect: Mapping[str, Version | None] | None = None,
    ) -> None:
        """Check every precondition, then apply every change (no await in between: atomic)."""
        failed = [
            key
            for key, version in (expect or {}).items()
            if (self._data[key][1] if key in self._data else None) != version
        ]
        if failed:
            raise VersionMismatch(sorted(failed))
        for key, value in changes.items():
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
                continue
            if key not in self._data:
                bisect.insort(self._keys, key)
            self._clock += 1
            self._data[key] = (value, self._clock)
