"""Command-line options made from the library's configuration fields (pipeline/config.py).

Every field declared there with ``option(...)`` becomes a Typer option of each command that offers
its config class: the flag, help and default come from the field, so a new field is a new option
(and a new line of docs/options.md, which is generated from the commands) without a line here. A
command only says which config classes it offers (``Group``) and, where its wording differs from the
field's, overrides the flag or the help (``Override``).

The same table works backwards: the library names settings in its messages ("StyleConfig.size",
pipeline.errors.setting) and ``CommandOptions.flag_of`` turns each into this command's flag.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from pipeline.config import WordCheck
from pipeline.errors import render


class UsageError(Exception):
    """A value the option's kind cannot hold (text for a number): exit code 2, as Typer's own errors."""


@dataclass(frozen=True)
class Override:
    """A command's own wording for one field: another flag, another help text."""

    flag: str | None = None
    help: str | None = None


@dataclass(frozen=True)
class Group:
    """One config class a command offers. ``defaults`` is an instance: its values are the options'
    defaults (a video job's style settings start from VIDEO_STYLE, a photo's from StyleConfig())."""

    defaults: Any
    only: tuple[str, ...] | None = None  # the fields offered; None: every field with cli=True
    skip: tuple[str, ...] = ()
    overrides: dict[str, Override] = field(default_factory=dict)


@dataclass(frozen=True)
class _Param:
    name: str  # the command function's keyword: the flag without dashes, "-" as "_"
    flags: tuple[str, ...]
    annotation: Any  # what Typer parses the text into
    default: Any
    help: str
    owner: type  # the config class
    field: str
    kind: Any  # the field's own type


def _without_none(kind) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else typing.Union[rest]), True  # noqa: UP007
    return kind, False


def _cli_type(kind) -> tuple[Any, bool]:
    """The Typer type for a field's type, and whether its CLI default becomes None (lists, text)."""
    base, optional = _without_none(kind)
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        if item is str:
            return list[str] | None, True  # a repeatable option
        return str | None, True  # numbers as one comma-separated value, "1,3,9"
    if typing.get_origin(base) in (typing.Union, types.UnionType):  # int | str: a number or a word
        return (str | None if optional else str), False
    return (base | None if optional else base), False


class CommandOptions:
    """The generated options of one command: its signature, its config objects, its flags."""

    def __init__(self, *groups: Group):
        self.params: list[_Param] = []
        for group in groups:
            owner = type(group.defaults)
            hints = typing.get_type_hints(owner)
            offered = group.only or [f.name for f in dataclasses.fields(owner) if f.metadata.get("cli", True)]
            for f in dataclasses.fields(owner):
                if f.name not in offered or f.name in group.skip or "help" not in f.metadata:
                    continue
                override = group.overrides.get(f.name, Override())
                flag = override.flag or f.metadata["flag"] or "--" + f.name.replace("_", "-")
                annotation, blank = _cli_type(hints[f.name])
                default = getattr(group.defaults, f.name)
                if blank and default == ():
                    default = None
                elif isinstance(default, tuple):
                    default = ",".join(f"{v:g}" for v in default)
                self.params.append(_Param(flag[2:].replace("-", "_"), (flag, *f.metadata["aliases"]), annotation,
                                          default, override.help or f.metadata["help"], owner, f.name,
                                          hints[f.name]))
        self.own: dict[str, str] = {}  # the command's hand-written options: keyword -> flag
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"two fields share a flag: {sorted(n for n in names if names.count(n) > 1)}")

    def flag_of(self, setting: str) -> str | None:
        """This command's flag for a setting the library named ("StyleConfig.size", or a keyword
        such as "overwrite"), or None when the command has none."""
        owner, _, name = setting.rpartition(".")
        for p in self.params:
            if (p.owner.__name__ == owner and p.field == name) or (not owner and p.name == name):
                return p.flags[0]
        return self.own.get(name) if not owner else None

    def text(self, message: str) -> str:
        """A library message with the settings it names shown as this command's flags."""
        return render(message, self.flag_of)

    def command(self, function: Callable) -> Callable:
        """Give ``function`` (which takes ``**settings``) the generated options in its signature, right
        after its arguments; Typer reads that signature (and the docs generator too)."""
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        leading = [p for p in own if p.annotation is typer.Context or _is_argument(p.annotation)]
        options = [p for p in own if p not in leading]
        for p in options:
            info = next(e for e in typing.get_args(p.annotation)[1:] if isinstance(e, typer.models.OptionInfo))
            first = [info.default] if isinstance(info.default, str) and info.default.startswith("-") else []
            decls = [d for d in (*first, *(info.param_decls or ())) if d.startswith("--")]
            self.own[p.name] = decls[0] if decls else "--" + p.name.replace("_", "-")
        generated = [
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default,
                              annotation=Annotated[p.annotation, typer.Option(*_decls(p), help=self.text(p.help))])
            for p in self.params
        ]
        keyword_only = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in options]
        # inspect.signature() (and so Typer) reads __signature__ when a function has one.
        function.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*leading, *generated, *keyword_only])
        function.__annotations__ = {**hints, **{p.name: p.annotation for p in generated}}
        return function

    def build(self, values: dict[str, Any]) -> dict[type, Any]:
        """One object per config class from the options' values (the rest stay the group's defaults).
        A value the field's check refuses raises the library's ConfigError."""
        changes: dict[type, dict[str, Any]] = {}
        for p in self.params:
            changes.setdefault(p.owner, {})[p.field] = self._value(p, values[p.name])
        return {owner: owner(**fields) for owner, fields in changes.items()}

    def _value(self, p: _Param, text: Any) -> Any:
        base, optional = _without_none(p.kind)
        if text is None:
            return None if optional else (() if typing.get_origin(base) is tuple else text)
        if typing.get_origin(base) is tuple:
            if typing.get_args(base)[0] is str:
                return tuple(text)
            try:
                return tuple(float(v) for v in text.split(","))
            except ValueError:
                raise UsageError(f"{p.flags[0]} {text!r}: expected comma-separated numbers, e.g. 1,3,9") from None
        if typing.get_origin(base) in (typing.Union, types.UnionType):
            check = {f.name: f for f in dataclasses.fields(p.owner)}[p.field].metadata["check"]
            if isinstance(check, WordCheck) and text in check.words:  # "auto"
                return text
            try:
                return int(text)
            except ValueError:
                raise UsageError(f"{p.flags[0]} {check(text)}") from None
        return text


def _decls(p: _Param) -> tuple[str, ...]:
    """Typer's names for an option; a switch gets its "--no-" twin, as Typer gives undeclared switches."""
    if p.kind is bool:
        return (f"{p.flags[0]}/--no-{p.flags[0][2:]}", *p.flags[1:])
    return p.flags


def _is_argument(annotation) -> bool:
    return any(isinstance(e, typer.models.ArgumentInfo) for e in typing.get_args(annotation)[1:])
