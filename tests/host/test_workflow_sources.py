"""Every example workflow is generated from its API-format source and is up to date with it."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p.stem for p in (ROOT / "assets" / "workflow_sources").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def make_workflows():
    spec = importlib.util.spec_from_file_location("vek_make_workflows", ROOT / "assets" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_workflow_has_a_source():
    workflows = sorted(p.stem for p in (ROOT / "example_workflows").glob("*.json"))
    assert workflows == SOURCES


@pytest.mark.parametrize("name", SOURCES)
def test_workflow_matches_its_source(name, make_workflows, object_info):
    assert make_workflows.make(name, object_info, check=True) == []
