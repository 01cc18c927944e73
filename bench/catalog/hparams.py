"""Declared hyperparameters: the keyword arguments of a method's ``__init__``, with type, default and meaning.

A method declares each hyperparameter once, in its signature::

    def __init__(self, samples: Annotated[int, "relaxed masks drawn per step (K)"] = 2) -> None: ...

The type and the meaning come from the annotation (``typing.Annotated[type, "meaning"]``; a plain annotation, or
none, works too: the type is then taken from the default), the default from the signature. The harness uses the
declaration to check values given on the command line or in an experiment file before any work starts, to resolve
every run's full set of hyperparameters (which enters its id), and to show them (``bench list methods --details``).

Supported types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``tuple[int, ...]`` / ``tuple[float, ...]``
and any of these ``| None``. Values are canonical (a float hyperparameter given as ``1`` is ``1.0``; tuples are
tuples), so that equal settings give equal run ids.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from prunebench.core.errors import UsageError

NONE_WORDS = ("none", "null")
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


@dataclass(frozen=True)
class HParam:
    """One declared hyperparameter: its name, type annotation (without ``Annotated``), default and meaning."""

    name: str
    annotation: Any
    default: Any
    help: str = ""

    @property
    def optional(self) -> bool:
        return type(None) in _union_members(self.annotation)

    @property
    def base(self) -> Any:
        """The annotation without ``None``."""
        members = [m for m in _union_members(self.annotation) if m is not type(None)]
        return members[0] if len(members) == 1 else self.annotation

    @property
    def type_name(self) -> str:
        """How the type reads in listings and errors, e.g. ``float``, ``int | None``, ``one of uniform, erk``."""
        name = _type_name(self.base)
        return f"{name} | None" if self.optional else name

    def parse(self, text: str) -> Any:
        """The value of ``text`` (as typed on the command line), checked and canonical."""
        text = text.strip()
        if self.optional and text.lower() in NONE_WORDS:
            return None
        return self.coerce(_from_text(self.base, text, self))

    def coerce(self, value: Any) -> Any:
        """``value`` (from Python or an experiment file) checked against the type and made canonical."""
        if value is None or (isinstance(value, str) and self.optional and value.lower() in NONE_WORDS):
            if self.optional:
                return None
            raise self._wrong(value)
        converted = _convert(self.base, value)
        if converted is _INVALID:
            raise self._wrong(value)
        return converted

    def _wrong(self, value: Any) -> UsageError:
        return UsageError(f"hyperparameter {self.name} takes {self.type_name}, got {value!r}")


class _Invalid:
    pass


_INVALID: Any = _Invalid()


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(annotation))
    if get_origin(annotation) is tuple:
        return f"tuple of {_type_name(get_args(annotation)[0])}"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _convert(annotation: Any, value: Any) -> Any:
    """``value`` as ``annotation`` requires, or ``_INVALID``."""
    if annotation is Any:
        return tuple(value) if isinstance(value, list) else value
    if get_origin(annotation) is Literal:
        return value if value in get_args(annotation) else _INVALID
    if get_origin(annotation) is tuple:
        if not isinstance(value, list | tuple):
            return _INVALID
        item = get_args(annotation)[0]
        items = tuple(_convert(item, v) for v in value)
        return _INVALID if any(i is _INVALID for i in items) else items
    if annotation is bool:
        return value if isinstance(value, bool) else _INVALID
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return _INVALID
    if annotation is str:
        return value if isinstance(value, str) else _INVALID
    return value if isinstance(value, annotation) else _INVALID


def _from_text(annotation: Any, text: str, hparam: HParam) -> Any:
    """Read ``text`` as a value of ``annotation`` (before checking)."""
    if get_origin(annotation) is tuple:
        inner = _unbracketed(text, hparam)
        item = get_args(annotation)[0]
        return [_from_text(item, part, hparam) for part in inner.split(",") if part.strip()]
    if get_origin(annotation) is Literal:
        choices = {str(choice): choice for choice in get_args(annotation)}
        return choices.get(text, text)
    if annotation is bool:
        lowered = text.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise hparam._wrong(text)
    if annotation in (int, float):
        try:
            number = float(text)
        except ValueError:
            raise hparam._wrong(text) from None
        if annotation is int:
            if not number.is_integer():
                raise hparam._wrong(text)
            return int(number)
        return number
    if annotation is Any:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text
    return text


def _unbracketed(text: str, hparam: HParam) -> str:
    """The items of a tuple typed as ``1,28,28``, ``(1,28,28)`` or ``[1,28,28]``; brackets that do not close (or
    that nest) are refused, not dropped: ``(1,28`` is a typing slip, not the tuple ``(1, 28)``."""
    inner = text.strip()
    if len(inner) >= 2 and inner[0] + inner[-1] in ("()", "[]"):
        inner = inner[1:-1]
    if any(bracket in inner for bracket in "()[]{}"):
        raise hparam._wrong(text)
    return inner


def declared_hparams(cls: type) -> dict[str, HParam]:
    """The hyperparameters ``cls.__init__`` declares, in signature order.

    Every keyword argument with a default is a hyperparameter (``*args``/``**kwargs`` are not). An argument
    without a default is an error at registration: a run must be fully described by its configuration.
    """
    if cls.__init__ is object.__init__:
        return {}
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception as error:  # noqa: BLE001  (an annotation that does not resolve is the author's error)
        raise TypeError(f"{cls.__name__}.__init__ has annotations that do not resolve: {error}") from None
    declared: dict[str, HParam] = {}
    for name, parameter in list(signature.parameters.items())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty:
            raise TypeError(f"{cls.__name__}: hyperparameter {name!r} needs a default value")
        annotation, meaning = hints.get(name, Any), ""
        if get_origin(annotation) is Annotated:
            annotation, *extras = get_args(annotation)
            meaning = next((e for e in extras if isinstance(e, str)), "")
        if annotation is Any and parameter.default is not None:
            annotation = type(parameter.default)
        hparam = HParam(name, annotation, None, meaning)
        declared[name] = HParam(name, annotation, hparam.coerce(parameter.default), meaning)
    return declared


def format_value(value: Any) -> str:
    """A value as it reads in labels and listings: ``0.6``, ``none``, ``(1, 28, 28)``, ``True``."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
