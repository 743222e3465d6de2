"""The demo round's inputs: real medical images that ship in PyPI packages, captions and questions written here.

:func:`vital.init` with ``demo=True`` builds them (:mod:`vital.demo.corpus`)
and writes a ``vital.toml`` that runs every stage offline; ``vital demo`` is
that, then ``vital run``.
"""
