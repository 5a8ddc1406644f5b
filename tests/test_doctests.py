"""The Examples sections of the public docstrings, run as doctests."""
import doctest

import numpy as np
import pytest

import fastnorm
from fastnorm import nn, reference


def _public():
    """(qualified name, object) of every public function and class."""
    seen = set()
    for module, names in ((fastnorm, fastnorm.__all__), (nn, nn.__all__),
                          (reference, [n for n in dir(reference) if not n.startswith("_")])):
        for name in names:
            obj = getattr(module, name)
            if callable(obj) and id(obj) not in seen:
                seen.add(id(obj))
                yield f"{module.__name__}.{name}", obj


def _tests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    for qualname, obj in _public():
        # The object's docstring (and a class's methods'), found by hand:
        # compiled functions are not found through their module.
        for test in finder.find(obj, qualname, module=False, globs={}):
            if test.examples:
                yield test


TESTS = sorted(_tests(), key=lambda t: t.name)


def test_examples_exist():
    names = {t.name for t in TESTS}
    for name in ("fastnorm.layer_norm", "fastnorm.group_norm", "fastnorm.weight_norm_backward"):
        assert name in names


@pytest.mark.parametrize("test", TESTS, ids=[t.name for t in TESTS])
def test_docstring_examples(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    options = np.get_printoptions()
    try:
        result = runner.run(test, out=lambda s: print(s, end=""))
    finally:
        np.set_printoptions(**options)
        fastnorm.set_num_threads(None)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
