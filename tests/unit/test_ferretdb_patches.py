"""The FerretDB patches the local stack applies to the module source before building it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_localstack

localstack = load_localstack()
PATCHES = json.loads((ROOT / "stack" / "ferretdb" / "patches.json").read_text())


def test_each_patch_names_a_file_and_says_why() -> None:
    for patch in PATCHES:
        assert patch["old"] != patch["new"] and patch["why"]
        assert patch["file"].startswith("internal/") and patch["file"].endswith(".go")


def test_a_patch_applies_once_and_again_is_a_no_op(tmp_path: Path) -> None:
    source = tmp_path / "src"
    target = source / "pkg" / "a.go"
    target.parent.mkdir(parents=True)
    target.write_text('const X = "old" // and more\n')
    patch = {"file": "pkg/a.go", "old": '"old"', "new": '"new"', "why": "test"}
    localstack._patch(source, [patch])
    localstack._patch(source, [patch])
    assert target.read_text() == 'const X = "new" // and more\n'


def test_a_patch_that_no_longer_applies_stops_the_build(tmp_path: Path) -> None:
    target = tmp_path / "a.go"
    target.write_text("something else entirely\n")
    with pytest.raises(localstack.StackError, match="no longer applies"):
        localstack._patch(tmp_path, [{"file": "a.go", "old": "x1", "new": "y1", "why": "t"}])
