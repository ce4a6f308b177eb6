"""Kefu: a self-hosted customer-service chatbot. Importing the package loads no torch."""

__version__ = "0.1.0"
