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
import __future__

import ast
import importlib.util
import typing
from collections.abc import Callable, Collection
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


_TYPING_NAMES = ("Annotated", "Any", "Literal", "Optional", "Union")
"""What ``typing`` gives an ``__init__`` read by :func:`init_from_source` for its annotations."""


def init_from_source(path: Path, class_name: str, depth: int = 0) -> Callable[..., None] | None:
    """The ``__init__`` of ``class_name`` in the module at ``path``, compiled alone from its source, or ``None``.

    Only the function definition runs, with the module's literal constants and ``typing``'s :data:`_TYPING_NAMES`
    in scope, so its signature (the hyperparameters' names and defaults) and annotations can be read without
    importing the module and what it imports. A class without its own ``__init__`` has its one base's, found
    through the module's ``from ... import`` of it (``object.__init__`` at the root). ``None`` when a module cannot
    be parsed, the class is not at its module's top level, something else may write its ``__init__`` (a decorator
    other than ``@register``, a metaclass, an assignment), it has several bases or a base that is not imported by
    name, ``__init__`` is decorated, or a default needs another name; an annotation that needs another name fails
    later, where the annotations are resolved.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name]
    if len(classes) != 1 or depth > 8 or not _plain(classes[0]):
        return None
    inits = [
        node for node in classes[0].body if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    ]
    if not inits:
        return _inherited_init(path, tree, classes[0], depth)
    if len(inits) != 1 or inits[0].decorator_list:
        return None
    future = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(name.name == "annotations" for name in node.names)
        for node in tree.body
    )
    namespace: dict[str, Any] = {name: getattr(typing, name) for name in _TYPING_NAMES}
    namespace.update(_constants(tree))
    try:
        code = compile(
            ast.Module(body=inits, type_ignores=[]),
            str(path),
            "exec",
            flags=__future__.annotations.compiler_flag if future else 0,
            dont_inherit=True,
        )
        exec(code, namespace)  # noqa: S102  (a function definition from the package's own source)
    except Exception:  # noqa: BLE001  (a default that needs the module: the caller imports it instead)
        return None
    return namespace["__init__"]


def _plain(node: ast.ClassDef) -> bool:
    """Whether the class's ``__init__`` is what its body and bases say: no decorator but ``@register(...)`` (a
    ``@dataclass`` writes one), no metaclass, no ``__init__`` bound by an assignment."""
    assigned = [
        target
        for statement in node.body
        if isinstance(statement, ast.Assign | ast.AnnAssign)
        for target in (statement.targets if isinstance(statement, ast.Assign) else [statement.target])
    ]
    return (
        not node.keywords
        and all(_called(decorator, (REGISTER,)) for decorator in node.decorator_list)
        and not any(isinstance(target, ast.Name) and target.id == "__init__" for target in assigned)
    )


def _inherited_init(
    path: Path, tree: ast.Module, node: ast.ClassDef, depth: int
) -> Callable[..., None] | None:
    """The ``__init__`` that ``node``, which defines none, inherits from its one base: a class of the same module
    or one it imports by name (see :func:`init_from_source`)."""
    if not node.bases:
        return object.__init__
    if len(node.bases) != 1 or not isinstance(node.bases[0], ast.Name):
        return None
    base = node.bases[0].id
    if base == "object":
        return object.__init__
    if any(isinstance(statement, ast.ClassDef) and statement.name == base for statement in tree.body):
        return init_from_source(path, base, depth + 1)
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
            for name in statement.names:
                if (name.asname or name.name) == base:
                    try:
                        found = importlib.util.find_spec(statement.module)
                    except (ImportError, ValueError):
                        return None
                    if found is None or not found.origin or not found.origin.endswith(".py"):
                        return None
                    return init_from_source(Path(found.origin), name.name, depth + 1)
    return None
