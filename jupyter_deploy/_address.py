"""``HOST:PORT`` addresses: parsing, and whether one stays on this machine."""

from __future__ import annotations

import ipaddress

from .errors import DeployError


def split_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6) as ``(host, port)``; raises DeployError."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise DeployError(f"bad address {address!r}: use HOST:PORT, e.g. 127.0.0.1:7700")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP, without port) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
