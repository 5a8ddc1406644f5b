"""Sphinx configuration of fastnorm's documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` with the ``docs``
extra installed and fastnorm itself installed (the API pages import it).
"""
import fastnorm

project = "fastnorm"
author = "the fastnorm developers"
copyright = "the fastnorm developers"
version = release = fastnorm.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Markdown: ```{directive}``` blocks, $math$, and anchors for section links.
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# API pages: the docstrings are numpydoc; the signatures come from the
# compiled functions (embedsignature) and the Python ones alike.
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"fastnorm {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []
