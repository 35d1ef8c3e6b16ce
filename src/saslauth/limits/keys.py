"""Client networks, store keys and keyed fingerprints.

Passwords are never stored: a wrong password is remembered only as a truncated HMAC under a
key that is random per process and never leaves it (not even into Redis).  User names are not
secret (they are in the log), so the shared per-network user sets use a plain digest of them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from saslauth.limits.settings import Network

NO_RIP = "-"  # every request without a usable rip shares this one network budget


def _address(rip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client address (an IPv4-mapped IPv6 one as IPv4), or None if absent or unusable."""
    if not rip:
        return None
    try:
        address = ipaddress.ip_address(rip.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_network(rip: str | None, ipv4_prefix: int, ipv6_prefix: int) -> Network | None:
    """The network an address is counted in (IPv4-mapped IPv6 counts as IPv4); None if unusable."""
    address = _address(rip)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv4Network((address, ipv4_prefix), strict=False)
    return ipaddress.IPv6Network((address, ipv6_prefix), strict=False)


def trusted(rip: str | None, networks: tuple[Network, ...]) -> bool:
    address = _address(rip) if networks else None
    return address is not None and any(address in net for net in networks)


def user_digest(user: str) -> str:
    """A short stable name for a user in shared sets (user names are not secret)."""
    return hashlib.sha256(user.encode("utf-8", "surrogateescape")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Keys:
    """The store keys one attempt touches."""

    network: str  # "net:203.0.113.7/32" or "net:-"
    user: str  # "user:alice"
    pair: str  # "pair:203.0.113.7/32|alice"
    success: str  # "ok:203.0.113.7/32|alice": this network recently logged in as this user
    users: str  # "users:203.0.113.7/32": distinct user names that failed from there
    net_label: str
    user_name: str

    @classmethod
    def of(cls, network: Network | None, user: str) -> Keys:
        net = str(network) if network is not None else NO_RIP
        return cls(
            network=f"net:{net}",
            user=f"user:{user}",
            pair=f"pair:{net}|{user}",
            success=f"ok:{net}|{user}",
            users=f"users:{net}",
            net_label=net,
            user_name=user,
        )


class Fingerprints:
    """Truncated HMAC-SHA256 under a per-process random key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "Fingerprints(<key hidden>)"

    def of(self, *parts: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()[:12]
