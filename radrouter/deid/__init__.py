"""De-identification for external destinations (PS3.15 Basic Profile); re-identification of what returns."""

from radrouter.deid.mapping import find_pseudonyms, record_pseudonyms
from radrouter.deid.profile import IssuedPseudonym, deidentify
from radrouter.deid.reidentify import is_pseudonymous, reidentify

__all__ = [
    "IssuedPseudonym",
    "deidentify",
    "find_pseudonyms",
    "is_pseudonymous",
    "record_pseudonyms",
    "reidentify",
]
