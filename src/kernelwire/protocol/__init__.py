"""The sans-I/O protocol core: messages, requests, wire codec, connection info.

Nothing in this package opens a socket, starts a thread or needs an event loop.
"""

from . import requests
from .codec import DELIMITER, ReplayGuard, Session, Signer, split_identities
from .jsonutil import dumps, format_date, loads, parse_date
from .message import CHANNELS, PROTOCOL_VERSION, Channel, HeaderFactory, Message, channel_for
from .requests import Request

__all__ = [
    "CHANNELS",
    "DELIMITER",
    "PROTOCOL_VERSION",
    "Channel",
    "HeaderFactory",
    "Message",
    "ReplayGuard",
    "Request",
    "Session",
    "Signer",
    "channel_for",
    "dumps",
    "format_date",
    "loads",
    "parse_date",
    "requests",
    "split_identities",
]
