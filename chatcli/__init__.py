"""chatcli: a terminal chat client for OpenAI-compatible chat-completions endpoints."""

__version__ = "0.1.0"
