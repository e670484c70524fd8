"""Encoders: a Protocol and a registry of named backends (``open_clip:``, ``sentence-transformers:``, ``lit:``)."""

from .base import Encoder, available_encoders, get_encoder, normalize, register_encoder

__all__ = ["Encoder", "available_encoders", "get_encoder", "normalize", "register_encoder"]
