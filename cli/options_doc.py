"""docs/options.md, generated from the commands themselves so that the page cannot drift from `--help`.

    python -m cli.options_doc > docs/options.md      (what `make docs` runs)

The page is read off the command functions' signatures: each parameter's default and its
``typer.Option`` / ``typer.Argument`` (help text, option names), exactly what Typer builds `--help`
from. A test regenerates the page and fails when the committed one differs, and checks every option
on it against the real `--help` output.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from dataclasses import dataclass

import typer
import typer.models

# (command name, module, the Typer app's command function, one line of context)
COMMANDS = (
    ("stylize-images", "cli.images", "stylize_images", "One image file, or a whole photo folder (see [folders.md](folders.md))."),
    ("stylize-video", "cli.video", "stylize_video", "A video file or a folder of numbered frames (see [video.md](video.md))."),
)


@dataclass(frozen=True)
class Param:
    names: str  # as typed on the command line, e.g. "--size N" or "--recursive / --no-recursive"
    default: str
    help: str
    argument: bool


def _option_names(name: str, info: typer.models.OptionInfo, annotation) -> str:
    is_bool = annotation is bool
    # In the Annotated form, Typer keeps the first declared name in `default` and the rest in param_decls.
    first = [info.default] if isinstance(info.default, str) and info.default.startswith("-") else []
    decls = [d for d in (*first, *(info.param_decls or ())) if d.startswith("-")]
    if not decls:
        flag = "--" + name.replace("_", "-")
        return f"{flag} / --no-{flag[2:]}" if is_bool else f"{flag} {_metavar(annotation)}"
    names = ", ".join(d.replace("/", " / ") for d in decls)  # "--recursive/--no-recursive": a switch and its twin
    return names if is_bool else f"{names} {_metavar(annotation)}"


def _metavar(annotation) -> str:
    base = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)
    if typing.get_origin(base) is list:
        base = typing.get_args(base)[0]
    return {int: "N", float: "X", str: "TEXT"}.get(base, "PATH")


def _default_text(default, annotation) -> str:
    if annotation is bool:
        return "on" if default else "off"
    if default is None or default == []:
        return "none"
    return f"`{default}`"


def command_params(function) -> list[Param]:
    hints = typing.get_type_hints(function, include_extras=True)
    params = []
    for name, parameter in inspect.signature(function).parameters.items():
        annotated = hints[name]
        if annotated is typer.Context:  # the invocation itself, not something the user types
            continue
        annotation, *extras = typing.get_args(annotated)
        info = next(e for e in extras if isinstance(e, typer.models.ParameterInfo))
        help_text = " ".join((info.help or "").split())
        if isinstance(info, typer.models.ArgumentInfo):
            params.append(Param(name.upper(), "(required)", help_text, True))
        else:
            assert isinstance(info, typer.models.OptionInfo)  # a Typer parameter is an argument or an option
            params.append(Param(_option_names(name, info, annotation), _default_text(parameter.default, annotation),
                                help_text, False))
    return params


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    out = [
        "# Options",
        "",
        "Every argument and option of both commands with its default. This page is generated from the",
        "commands themselves (`make docs`), and a test fails when it and `--help` disagree. An option that",
        "is a configuration setting is declared once, with its default and help, in `pipeline/config.py`.",
        "",
    ]
    for name, module, function_name, intro in COMMANDS:
        function = getattr(importlib.import_module(module), function_name)
        params = command_params(function)
        summary = " ".join((inspect.getdoc(function) or "").split("\n\n")[0].split())
        arguments = " ".join(p.names for p in params if p.argument)
        out += [f"## `{name}`", "", f"{summary} {intro}", "", f"    {name} {arguments} [OPTIONS]", ""]
        out += ["| argument / option | default | what it does |", "| --- | --- | --- |"]
        out += [f"| `{p.names}` | {p.default} | {_cell(p.help)} |" for p in params]
        out.append("")
    return "\n".join(out)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
