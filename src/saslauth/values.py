"""``@value``: the immutable records of the per-request path (protocol events, mechanism effects,
identities).

To the type checker a ``@value`` class is ``@dataclass(frozen=True, slots=True)``: assigning to
a field is an error, and mypy strict is part of the test command.  At run time it is
``@dataclass(slots=True, unsafe_hash=True)`` — equal and hashable like the frozen kind, but built
without frozen's ``object.__setattr__`` per field, which made each of these records cost 1.8 µs
instead of 0.23 µs (13 fields; ``python3 -m timeit``).  About ten are built per authentication,
so that was a third of the front's own time per request.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def value(cls: type[T]) -> type[T]:
    return dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)
