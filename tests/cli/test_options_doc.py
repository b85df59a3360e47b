"""docs/options.md is generated from the commands and must agree with their real --help."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import options_doc

PAGE = Path(__file__).resolve().parents[2] / "docs" / "options.md"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def test_committed_page_is_the_generated_one():
    assert PAGE.read_text() == options_doc.render(), "docs/options.md is stale: run `make docs`"


@pytest.mark.parametrize("name, module", [(name, module) for name, module, _, _ in options_doc.COMMANDS])
def test_page_and_help_name_the_same_options(name, module):
    result = CliRunner().invoke(importlib.import_module(module).app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    in_help = set(OPTION.findall(result.output)) - {"--help"}
    section = options_doc.render().split(f"## `{name}`")[1].split("\n## ")[0]
    on_page = set(OPTION.findall(section))
    assert in_help and on_page == in_help


def test_defaults_on_the_page_are_the_librarys():
    from pipeline.config import VIDEO_STYLE, StyleConfig, VideoConfig

    section = options_doc.render().split("## `stylize-video`")[1]
    assert f"| `--first-iterations N` | `{VIDEO_STYLE.iterations}` |" in section
    assert f"| `--iterations N` | `{VideoConfig().iterations}` |" in section
    assert f"| `--size N` | `{VIDEO_STYLE.size}` |" in section
    assert f"| `--style-weight X` | `{StyleConfig().style_weight}` |" in section
