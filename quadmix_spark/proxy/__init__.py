"""Cheap proxy "models" that turn a selected token stream into evaluation losses."""

from .ngram import CL100K_N_VOCAB, NgramProxy

__all__ = ["CL100K_N_VOCAB", "NgramProxy"]
