"""cli/settings.py: one declaration per setting. A field of a config dataclass is an option of each
command that offers its class, with its help and default, a line of docs/options.md, and a check
whose error names the setting (the flag, on the command line)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from cli import options_doc
from cli.settings import CommandOptions, Group, Override
from pipeline.config import _Checked, at_least, count_or, option
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ToyConfig(_Checked):
    """A config class as pipeline/config.py declares them."""

    size: int = option(512, "Long side in pixels.", check=at_least(16, " pixels"))
    tile: int | str = option("auto", "Tile size: auto, off, or pixels.", check=count_or("auto", "off"))
    side: int | str = option(512, "Pixels, or full: the input's own size.", check=count_or("full", low=16))
    names: tuple[str, ...] = option((), "A name (repeatable).")
    weights: tuple[float, ...] = option((), "Weights, e.g. 1,3,9.")
    fast: bool = option(False, "Go fast.")
    hidden: int = option(3, "Not for the command line.", cli=False)


TOY = CommandOptions(Group(ToyConfig(), overrides={"size": Override(help="The working size.")}))
app = typer.Typer(add_completion=False, rich_markup_mode=None)
seen = {}


@app.command()
@TOY.command
def toy(name: Annotated[str, typer.Argument(help="A name.")], **settings) -> None:
    from cli import common

    with common.user_errors(TOY):
        seen.update(TOY.build(settings))


def run(*args):
    return CliRunner().invoke(app, ["x", *args])


def test_each_field_is_an_option_with_its_help_and_default():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--size", "--tile", "--names", "--weights", "--fast", "--no-fast"):
        assert flag in result.output
    assert "--hidden" not in result.output and "The working size." in result.output
    page = {p.names: p for p in options_doc.command_params(toy)}
    assert page["--size N"].default == "`512`" and page["--tile TEXT"].default == "`auto`"
    assert page["--fast / --no-fast"].default == "off" and page["--names TEXT"].default == "none"


def test_values_become_the_config_object():
    assert run("--size", "64", "--tile", "off", "--names", "a", "--names", "b", "--weights", "1,3", "--fast")\
        .exit_code == 0
    assert seen[ToyConfig] == ToyConfig(size=64, tile="off", names=("a", "b"), weights=(1.0, 3.0), fast=True)
    assert run().exit_code == 0 and seen[ToyConfig] == ToyConfig()
    assert run("--tile", "256").exit_code == 0 and seen[ToyConfig].tile == 256
    assert run("--side", "full").exit_code == 0 and seen[ToyConfig].side == "full"
    assert run("--side", "640").exit_code == 0 and seen[ToyConfig].side == 640


def test_a_bad_value_is_refused_naming_the_setting_in_the_library_and_the_flag_on_the_command_line():
    with pytest.raises(ConfigError) as caught:
        ToyConfig(size=8)
    assert str(caught.value) == "ToyConfig.size must be at least 16 pixels (got 8)"
    result = run("--size", "8")
    assert result.exit_code == 1 and "--size must be at least 16 pixels (got 8)" in result.output
    result = run("--tile", "many")  # not a value of the option's kind: a usage error, as Typer's own
    assert result.exit_code == 2
    assert "--tile must be 'auto' or 'off' or a positive whole number (got 'many')" in result.output
    assert run("--weights", "1,x").exit_code == 2
    result = run("--side", "8")  # a number, but too small: the check's error, exit code 1
    assert result.exit_code == 1 and "--side must be 'full' or a whole number of at least 16 (got 8)" in result.output


def test_every_setting_of_the_offered_classes_is_an_option_of_the_command():
    from cli import images, video

    for command in (images.OPTIONS, video.OPTIONS):
        offered = {(p.owner, p.field) for p in command.params}
        for owner in {p.owner for p in command.params}:
            for f in dataclasses.fields(owner):
                left_out = {"StyleConfig": ("init", "seed")} if command is video.OPTIONS else {}
                if f.metadata.get("cli", True) and f.name not in left_out.get(owner.__name__, ()) \
                        and owner.__name__ != "ScaleConfig":
                    assert (owner, f.name) in offered, f"{owner.__name__}.{f.name}"


def test_library_messages_show_the_commands_flags():
    from cli import images, video
    from pipeline.errors import setting

    message = f"{setting('StyleConfig.iterations')} and {setting('overwrite')}"
    assert video.OPTIONS.text(message) == "--first-iterations and --overwrite"
    assert images.OPTIONS.text(message) == "--iterations and --overwrite"


def test_the_engines_messages_read_as_before_on_the_command_line(tmp_path, monkeypatch):
    """The device's and the weights' messages name their settings; each command shows its own flags,
    so the user reads exactly the lines these messages had when they quoted the flags themselves."""
    import torch

    from cli import images, video
    from pipeline.engine.device import resolve_device
    from pipeline.engine.weights import load_weights
    from pipeline.errors import StylizeError

    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    expected = {
        lambda: resolve_device("cuda"): "--device cuda: no CUDA GPU is available here (use --device cpu or auto)",
        lambda: resolve_device("tpu"): "--device 'tpu': expected auto, cpu, cuda or cuda:N",
        lambda: load_weights("no-such-source"):
            "--weights 'no-such-source': not 'original', 'torchvision' or an existing state-dict file",
        lambda: load_weights(str(listed)): f"--weights {listed}: expected a state dict, found list",
    }
    for fails, line in expected.items():
        with pytest.raises(StylizeError) as err:
            fails()
        assert "--" not in str(err.value)  # the library itself names no flag
        for command in (images.OPTIONS, video.OPTIONS):
            assert err.value.render(command.flag_of) == line
