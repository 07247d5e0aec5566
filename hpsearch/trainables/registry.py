"""A small name -> factory registry, shared by models, optimizers and datasets."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from hpsearch._suggest import did_you_mean

T = TypeVar("T", bound=Callable)
__all__ = ["Registry", "did_you_mean"]


class Registry(Generic[T]):
    """Maps names to factories; `register(name)` is a decorator that refuses duplicates."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        known = self.names()
        return f"unknown {self.kind} {name!r}; known: {known}{did_you_mean(name, known)}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
