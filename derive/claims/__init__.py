"""The built-in derivations, one module per topic, written with the public API."""

from __future__ import annotations

import importlib
from collections.abc import Mapping


class _Topics(Mapping):
    """Topic name -> its module, imported when first used: ``derive check`` on a user's file
    and ``derive --help`` never build the built-in claims, and need not import them."""

    # report order: the centering story comes first, full normalization continues it, and
    # the normalization family widens it
    NAMES = ("centering", "batchnorm", "normalization")

    def __getitem__(self, name):
        if name not in self.NAMES:
            raise KeyError(name)
        return importlib.import_module(f"{__name__}.{name}")

    def __iter__(self):
        return iter(self.NAMES)

    def __len__(self):
        return len(self.NAMES)


TOPICS = _Topics()


def all_claims():
    return [c for topic in TOPICS.values() for c in topic.claims()]
