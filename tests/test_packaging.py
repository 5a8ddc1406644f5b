"""The installed distribution: its name, version and type information."""
import importlib.metadata
import os

import pytest

import fastnorm


def _dist():
    try:
        return importlib.metadata.distribution("fastnorm-cpu")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastnorm is not installed as the fastnorm-cpu distribution")


def test_version_is_the_metadata_version():
    assert fastnorm.__version__ == _dist().version
    assert fastnorm.get_config()["version"] == fastnorm.__version__


def test_metadata():
    meta = _dist().metadata
    assert meta["Name"] == "fastnorm-cpu"
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "the fastnorm developers" in (meta.get("Author") or "") + (meta.get("Author-email") or "")


def test_stubs_and_marker_are_installed():
    folder = os.path.dirname(fastnorm.__file__)
    for name in ("py.typed", "_core.pyi", "_family.pyi", os.path.join("nn", "__init__.pyi"),
                 "reference.pyi"):
        assert os.path.isfile(os.path.join(folder, name)), name
