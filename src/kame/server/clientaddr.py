"""Who a `kame serve` client is: the peer's address, or, behind the reverse proxies the operator
trusts (``server.trusted_proxy`` / ``--trusted-proxy``), the nearest X-Forwarded-For address that
is not one of them; what the per-client caps count it by (``client_key``: an IPv6 address's /64),
and how the log shows it.
"""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web

from ..errors import ConfigError
from .logsafe import clean


def parse_trusted(spec: str | None) -> tuple:
    """``server.trusted_proxy`` / ``--trusted-proxy``: comma-separated addresses or networks
    of the reverse proxies in front (e.g. "127.0.0.1" or "10.0.0.0/8,::1"); None or "": none."""
    nets = []
    for part in (spec or "").split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"server.trusted_proxy: {part.strip()!r} is not an IP address or network "
                                  f"(give the reverse proxy's address, e.g. 127.0.0.1 or 10.0.0.0/8; "
                                  f"several comma-separated)") from None
    return tuple(nets)


# an address with the port a proxy may add: [IPv6] or [IPv6]:port, IPv4:port
_PORTED = re.compile(r"\[(?P<v6>[^\]]+)\](?::[0-9]{1,5})?|(?P<v4>[0-9.]+):[0-9]{1,5}")


def _hop(hop: str | None) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """(the address's text, the address) of a peer's address or an X-Forwarded-For hop, without
    the port or quotes a proxy may add (203.0.113.7:50001, [2001:db8::5]:50001, "[2001:db8::5]":
    Azure Application Gateway's form, RFC 7239's); None if it is not an IP address ("unknown")."""
    text = (hop or "").strip().strip('"')
    if (m := _PORTED.fullmatch(text)) is not None:
        text = m["v6"] or m["v4"]
    try:
        return text, ipaddress.ip_address(text)
    except ValueError:
        return None


def is_trusted(addr: str | None, nets: tuple) -> bool:
    """Whether ``addr`` (a peer's address, or an X-Forwarded-For hop: its port dropped) is in the
    trusted networks; an IPv4-mapped IPv6 address (an IPv4 peer of a dual-stack "::" bind:
    ::ffff:127.0.0.1) as its IPv4."""
    if (hop := _hop(addr)) is None:
        return False
    ip = hop[1]
    ips = (ip, ip.ipv4_mapped) if getattr(ip, "ipv4_mapped", None) else (ip,)
    return any(a.version == n.version and a in n for a in ips for n in nets)


def client_key(addr: str, trusted: tuple = ()) -> str:
    """What the per-client caps count a client by (server.max_connections_per_client,
    max_sessions_per_client): an IPv4 address (an IPv4-mapped IPv6 one as its IPv4); an IPv6
    address as its /64 network, which one host or home network is usually given whole (so 2^64
    addresses are one client, not 2^64 clients), but a link-local one (fe80::/10: every host on
    the link shares its /64) or a trusted proxy's (``trusted``: its connections are not its /64
    neighbours') as it is; a port dropped; anything else (not an address: client_address never
    gives one) as it is."""
    if (hop := _hop(addr)) is None:
        return addr
    ip = hop[1]
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.is_link_local or is_trusted(hop[0], trusted):
        return str(ip)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


def from_trusted_proxy(request: web.BaseRequest, trusted: tuple) -> bool:
    """Whether the request's peer is one of the trusted reverse proxies (``trusted``: networks)."""
    return bool(trusted) and is_trusted(request.remote, trusted)


HOP_CHARS = 60  # of an X-Forwarded-For hop that is not an address, the log shows this much


def client_address(request: web.BaseRequest, trusted: tuple) -> str:
    """The client's address (_client's), for the caps and the log (control characters escaped)."""
    return _client(request, trusted)[0]


def client_logged(request: web.BaseRequest, trusted: tuple) -> str:
    """client_address as the session and access log lines show it: with the X-Forwarded-For hop
    that is not an address it stands for, if any, shortened."""
    client, hop = _client(request, trusted)
    return client if hop is None else f'{client} (the proxy: X-Forwarded-For has "{hop}", not an address)'


def _client(request: web.BaseRequest, trusted: tuple) -> tuple[str, str | None]:
    """(the client's address, escaped; the X-Forwarded-For hop not an address it stands for,
    escaped and shortened, or None). The client is the peer, or, when the peer is a trusted proxy,
    the nearest address in X-Forwarded-For that is not one (a client can put anything in that
    header, so it is read only from proxies the operator named), its port dropped. A hop there
    that is not an address ("unknown", garbage: was the client, verbatim, a cap key a client
    chose) makes the trusted proxy that passed it on the client."""
    remote = request.remote or "?"
    if not trusted or not is_trusted(remote, trusted):
        return clean(remote), None
    nearest = remote  # the trusted proxy that wrote the next hop
    for hop in reversed(header_values(request, "X-Forwarded-For")):
        parsed = _hop(hop)
        if parsed is None:
            return clean(nearest), clean(hop, limit=HOP_CHARS)
        if not is_trusted(parsed[0], trusted):
            return clean(parsed[0]), None
        nearest = parsed[0]
    return clean(nearest), None


def header_values(request: web.BaseRequest, name: str) -> list[str]:
    """Header ``name``'s comma-separated values, over all its lines, in order (a proxy appends)."""
    return [h.strip() for v in request.headers.getall(name, []) for h in v.split(",") if h.strip()]
