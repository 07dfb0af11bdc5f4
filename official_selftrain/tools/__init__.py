"""The project's command-line tools, installed with the package.

Each runs as `python -m official_selftrain.tools.NAME` or as the console script
`official_selftrain_NAME`; `tools/NAME.py` in a source checkout is the same.
"""
