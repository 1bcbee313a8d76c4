"""A table's columns read once from its model: the complete rows of the fast inserts and the
API outputs copied from stored rows, so that a new column is declared in one place.

The hot path writes plain dicts through the driver (app.db.insert_row) and answers with
`model_construct`, skipping the ORM and validation on purpose. What these shapes know is
worked out when they are built, at import time, and checked then: a column that a use case
neither sets nor can leave to a default, or an output field that is neither a column nor
computed by its caller, fails loudly at start-up (and in every test), never per request."""

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from functools import partial
from types import NoneType, UnionType
from typing import Any, Generic, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from sqlalchemy import Table
from sqlmodel import SQLModel

Out = TypeVar("Out", bound=BaseModel)


def table_of(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def column_names(model: type[SQLModel]) -> tuple[str, ...]:
    """The table's columns in their declared order."""
    return tuple(table_of(model).c.keys())


class RowShape:
    """The complete row one use case writes into a table: the columns it `sets`, every other
    from the model's defaults (a default factory called per row, an enum default as its
    value), leaving out only what the database assigns itself (an autoincrement key, a server
    default). Built from the table and its model's fields once; `row(**values)` then only
    merges dicts."""

    __slots__ = ("_factories", "_static", "names", "sets", "table")

    def __init__(
        self, table: Table, fields: Mapping[str, FieldInfo], sets: Iterable[str], use_case: str
    ) -> None:
        self.table = table
        self.sets = tuple(sets)
        unknown = [name for name in self.sets if name not in table.c]
        if unknown:
            raise TypeError(f"{use_case}: {', '.join(unknown)} not a column of {table.name}")
        static: dict[str, Any] = {}
        factories: list[tuple[str, Callable[[], Any]]] = []
        missing = []
        for column in table.c:
            name = column.key
            if name in self.sets:
                continue
            field = fields.get(name)
            if field is not None and field.default_factory is not None:
                factories.append((name, field.default_factory))  # type: ignore[arg-type]
            elif field is not None and field.default is not PydanticUndefined:
                default = field.default
                if default is None and not column.nullable:
                    if column is table.autoincrement_column or column.server_default is not None:
                        continue  # the database assigns it
                    missing.append(name)
                elif isinstance(default, Enum):
                    static[name] = default.value
                elif isinstance(default, list | dict | set):
                    factories.append((name, partial(copy.deepcopy, default)))
                else:
                    static[name] = default
            elif column.server_default is not None:
                continue
            elif column.nullable:
                static[name] = None
            else:
                missing.append(name)
        if missing:
            raise TypeError(
                f"{use_case}: {table.name}.{', '.join(missing)} required (no default, not "
                "nullable) and not set: set it in the use case or give the model a default"
            )
        self._static = static
        self._factories = tuple(factories)
        self.names = (*self.sets, *static, *(name for name, _ in factories))

    @classmethod
    def of(cls, model: type[SQLModel], sets: Iterable[str], use_case: str) -> "RowShape":
        return cls(table_of(model), model.model_fields, sets, use_case)

    def row(self, **values: Any) -> dict[str, Any]:
        """The row to insert: `values` (the columns `sets`, which win over any default) and
        every other column's default."""
        row = {**self._static, **values}
        for name, factory in self._factories:
            if name not in values:
                row[name] = factory()
        return row

    def fill(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """For bulk fills (COPY, executemany): `values` in the order of `sets`, completed in
        the order of `names`."""
        if len(values) != len(self.sets):
            raise ValueError(f"{len(values)} values for the {len(self.sets)} columns set")
        return (*values, *self._static.values(), *(factory() for _, factory in self._factories))

    def column_list(self) -> str:
        return ", ".join(self.names)


def _enum_of(annotation: Any) -> tuple[type[Enum] | None, bool]:
    """The enum a field holds, and whether None is allowed beside it."""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation, False
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], Enum):
            return args[0], True
    return None, False


def _optional(enum: type[Enum], value: Any) -> Enum | None:
    return None if value is None else enum(value)


class OutputShape(Generic[Out]):
    """How an API output is built from a stored row without validating it again: the fields
    named as the table's columns copied (into their enum where the field holds one: the
    serializer wants the enum itself), the others `computed`, passed by the caller. Every
    field must be one or the other, checked once here."""

    __slots__ = ("_enums", "_plain", "computed", "copied", "out")

    def __init__(self, out: type[Out], model: type[SQLModel], computed: Iterable[str]) -> None:
        self.out = out
        self.computed = tuple(computed)
        table = table_of(model)
        columns = table.c
        fields = out.model_fields
        unknown = [name for name in self.computed if name not in fields]
        if unknown:
            raise TypeError(f"{out.__name__}: no field {', '.join(unknown)}")
        self.copied = tuple(n for n in fields if n in columns and n not in self.computed)
        uncovered = [n for n in fields if n not in self.copied and n not in self.computed]
        if uncovered:
            raise TypeError(
                f"{out.__name__}.{', '.join(uncovered)}: neither a column of {table.name} "
                "nor computed"
            )
        plain = []
        enums: list[tuple[str, Callable[[Any], Any]]] = []
        for name in self.copied:
            enum, optional = _enum_of(fields[name].annotation)
            if enum is None:
                plain.append(name)
            elif optional:
                enums.append((name, partial(_optional, enum)))
            else:
                enums.append((name, enum))
        self._plain = tuple(plain)
        self._enums = tuple(enums)

    def of_row(self, row: Mapping[str, Any], **computed: Any) -> Out:
        """From a row as written or read (a dict)."""
        return self.out.model_construct(
            **{name: row[name] for name in self._plain},
            **{name: convert(row[name]) for name, convert in self._enums},
            **computed,
        )

    def of_object(self, row: object, **computed: Any) -> Out:
        """From a row loaded by the ORM (a table model's instance)."""
        return self.out.model_construct(
            **{name: getattr(row, name) for name in self._plain},
            **{name: convert(getattr(row, name)) for name, convert in self._enums},
            **computed,
        )
