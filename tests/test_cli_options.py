"""The CLI option generator: dataclass fields + docstring → argparse options, and back."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from mien.cli.options import add_options, docstring_attributes, options_from_args


@dataclass
class _Opts:
    """Example.

    Attributes:
        clip_seconds: clip length in seconds,
            continued on the next line.
        a, b: two fields sharing one entry.
        flag: a switch.
        words: a list.
        hidden: set by the command.
    """

    clip_seconds: float = 2.0
    a: int | None = None
    b: str = "x"
    flag: bool = False
    words: tuple[str, ...] = ()
    renamed: int = field(default=3, metadata={"flag": "--other", "choices": [3, 4]})
    hidden: bool = field(default=True, metadata={"cli": False})


def _parse(argv, **kw):
    p = argparse.ArgumentParser()
    add_options(p, _Opts, **kw)
    return p, p.parse_args(argv)


def test_docstring_attributes():
    docs = docstring_attributes(_Opts)
    assert docs["clip_seconds"] == "clip length in seconds, continued on the next line."
    assert docs["a"] == docs["b"] == "two fields sharing one entry."
    assert "renamed" not in docs


def test_defaults_round_trip_to_the_dataclass():
    _, args = _parse([])
    assert options_from_args(_Opts, args) == _Opts()


def test_flags_types_and_metadata():
    p, args = _parse(["--clip-seconds", "1.5", "--a", "7", "--flag", "--words", "smile, laugh,", "--other", "4"])
    o = options_from_args(_Opts, args, hidden=False)
    assert o == _Opts(clip_seconds=1.5, a=7, flag=True, words=("smile", "laugh"), renamed=4, hidden=False)
    assert options_from_args(_Opts, p.parse_args(["--no-flag"])).flag is False
    assert "--hidden" not in p.format_help() and "continued on the next line" in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args(["--other", "5"])  # not in choices


def test_unsupported_type_is_found_when_the_parser_is_built():
    @dataclass
    class Bad:
        x: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="Bad.x"):
        add_options(argparse.ArgumentParser(), Bad)


def test_every_analyze_option_is_on_the_command_line():
    from mien.cli.main import build_parser
    from mien.pipelines.analyze import AnalyzeOptions

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    dests = {a.dest for a in sub.choices["analyze"]._actions}
    missing = {f.name for f in dataclasses.fields(AnalyzeOptions)} - dests - {"progress"}
    assert not missing
