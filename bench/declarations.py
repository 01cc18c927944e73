"""Reading a module's registrations from its source, without importing it (and so without torch).

``bench list methods`` and the leaderboard need a method's name, schedules, scopes, paper, version and summary, all
of which a module states in its ``@register(...)`` decorators and module-level ``alias(...)`` calls; ``bench list
datasets`` and ``bench list models`` need what ``@register_dataset(...)`` and ``@register_model(...)`` state. This
module reads them with :mod:`ast`: arguments must be literals (tuples and lists of them included) or names of
module-level constants bound to literals. A module that registers in any other way (a computed argument, a call
inside a function or a loop) gives ``None``, and the registry imports it instead; the registered class or function
is always imported on first use, and its decorator then checks that the declaration read here is the one that runs.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTER = "register"
ALIAS = "alias"


@dataclass(frozen=True)
class Registration:
    """One ``@register(name, **arguments)`` on ``class_name`` (a class, or a function for the decorators of datasets
    and models), whose docstring's first line is ``summary``."""

    name: str
    class_name: str
    summary: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class AliasCall:
    """One module-level ``alias(*args, **kwargs)``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class Declarations:
    registrations: list[Registration] = field(default_factory=list)
    aliases: list[AliasCall] = field(default_factory=list)


class _Unreadable(Exception):
    """A registration that is not made of literals."""


def _called(node: ast.AST, names: tuple[str, ...]) -> str | None:
    """The one of ``names`` that ``node`` calls (by name or as an attribute), else ``None``."""
    if isinstance(node, ast.Call):
        func = node.func
        name = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        )
        if name in names:
            return name
    return None


def _constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level ``NAME = literal`` bindings (a name bound twice, or to a non-literal, is left out)."""
    found: dict[str, Any] = {}
    seen: set[str] = set()
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                if target.id in seen:
                    found.pop(target.id, None)
                    continue
                seen.add(target.id)
                try:
                    found[target.id] = ast.literal_eval(node.value) if node.value is not None else None
                except ValueError:
                    pass
    return found


def _value(node: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(node, ast.Tuple | ast.List):
        items = [_value(item, constants) for item in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Name):
        if node.id in constants:
            return constants[node.id]
        raise _Unreadable(node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _Unreadable(ast.dump(node)) from None


def _arguments(
    call: ast.Call, constants: dict[str, Any], unread: Collection[str] = ()
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        raise _Unreadable("*args or **kwargs")
    args = tuple(_value(a, constants) for a in call.args)
    keywords = [k for k in call.keywords if k.arg is not None and k.arg not in unread]
    return args, {k.arg: _value(k.value, constants) for k in keywords}


def _first_line(node: ast.ClassDef | ast.FunctionDef) -> str:
    doc = (ast.get_docstring(node) or "").strip()
    return doc.splitlines()[0] if doc else ""


def read_declarations(
    path: Path,
    register: str = REGISTER,
    *,
    alias: str | None = ALIAS,
    on: type[ast.ClassDef] | type[ast.FunctionDef] = ast.ClassDef,
    unread: Collection[str] = (),
) -> Declarations | None:
    """The registrations and aliases of the module at ``path``, or ``None`` when they cannot all be read statically.

    ``register`` is the decorator's name and ``on`` what it decorates at module level (the methods' ``@register``
    on classes by default; ``register_dataset`` and ``register_model`` decorate functions); ``alias`` the name of
    the module-level alias call (``None``: there is none). Keyword arguments named in ``unread`` (a callable the
    listing does not need, such as a dataset's ``check``) are left out of the arguments rather than read.
    """
    names = (register,) if alias is None else (register, alias)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    constants = _constants(tree)
    found = Declarations()
    readable: set[int] = set()
    try:
        for node in tree.body:
            if isinstance(node, on):
                for decorator in node.decorator_list:
                    if _called(decorator, names) == register:
                        args, kwargs = _arguments(decorator, constants, unread)
                        if len(args) != 1 or not isinstance(args[0], str):
                            raise _Unreadable(f"{register}'s name")
                        summary = _first_line(node)
                        found.registrations.append(Registration(args[0], node.name, summary, kwargs))
                        readable.add(id(decorator))
            elif alias is not None and isinstance(node, ast.Expr) and _called(node.value, names) == alias:
                args, kwargs = _arguments(node.value, constants)
                found.aliases.append(AliasCall(args, kwargs))
                readable.add(id(node.value))
    except _Unreadable:
        return None
    # Any other call to register or alias (in a function, a loop, ``register(...)(cls)``) is not read here.
    if any(_called(node, names) and id(node) not in readable for node in ast.walk(tree)):
        return None
    return found
