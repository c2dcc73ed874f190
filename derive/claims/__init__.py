"""The built-in derivations, one module per topic, written with the public API."""

from . import batchnorm, centering, normalization

# report order: the centering story comes first, full normalization continues it, and the
# normalization family widens it
TOPICS = {"centering": centering, "batchnorm": batchnorm, "normalization": normalization}


def all_claims():
    return [c for topic in TOPICS.values() for c in topic.claims()]
