"""Where a webhook may go, and how it gets there: its URL parsed and normalised by httpx (the
client that delivers it), the host's addresses all public (or private allowed by the admin),
and the delivery connected to the very address that was checked, within an overall deadline,
reading a few KB of the answer at most."""

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

from app.problems import invalid

# A receiver has this long, from the name lookup to the last byte read, whatever it sends.
DEADLINE_SECONDS = 15.0
ANSWER_BYTES = 4096  # the status is what matters; the rest of an answer is never read

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?)+$")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: the IPv4 it embeds decides
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use translators: internal


class Unreachable(Exception):
    """A delivery that cannot be made to this address (message in French, for the outbox);
    `final` when no retry can cure it."""

    def __init__(self, reason: str, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


def is_public(address: str) -> bool:
    """A public Internet unicast address. Stricter than `is_global`, which takes
    ::127.0.0.1, 64:ff9b::7f00:1 (NAT64 of 127.0.0.1), 2002:7f00:1:: (6to4 of it) and
    multicast for public: an address that embeds an IPv4 one is what that one is."""
    ip = ipaddress.ip_address(address)
    if ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(str(ip.ipv4_mapped))
        if ip.sixtofour is not None:
            return is_public(str(ip.sixtofour))
        if ip in _NAT64:
            return is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip in _IPV4_COMPATIBLE or ip in _NAT64_LOCAL or ip.teredo is not None:
            return False
    return ip.is_global


@dataclass(frozen=True)
class Target:
    url: httpx.URL  # normalised
    host: str  # the name as asked (IDNA, lower case), or the address literal
    port: int


def parse(url: str, loc: list[str | int]) -> Target:
    """A webhook URL as httpx will send it, or 422 in French: https (http on the loopback
    only, checked with its addresses), a host name or an address, a port from 1 to 65535, no
    control character or space anywhere."""
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in url):
        raise invalid(loc, "Adresse de webhook invalide : espace ou caractère de contrôle.")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise invalid(loc, f"Adresse de webhook invalide : {_french(str(exc))}.") from exc
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise invalid(loc, "Adresse de webhook invalide : https://… attendu.")
    if port is not None and not 1 <= port <= 65535:
        raise invalid(loc, f"Adresse de webhook invalide : port {port} (de 1 à 65535).")
    host = parsed.raw_host.decode("ascii").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise invalid(loc, f"Adresse de webhook invalide : nom d'hôte « {host} ».") from None
    default = 443 if parsed.scheme == "https" else 80
    return Target(parsed.copy_with(fragment=None), host, port or default)


def _french(message: str) -> str:
    if message.startswith("Invalid port"):
        return "port invalide"
    if "IPv6" in message or "IPv4" in message:
        return "adresse IP mal écrite"
    return "mal écrite"


def _vet(target: Target, infos: list[tuple[object, ...]], allow_private: bool) -> list[str]:
    """Every address of the host, all checked: one internal address is enough to refuse
    (a name that resolves to a public and a private address could be made to use either)."""
    found = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))  # type: ignore[index]
    if not found:
        raise Unreachable(f"hôte introuvable : {target.host}")
    loopback = all(ipaddress.ip_address(a).is_loopback for a in found)
    if target.url.scheme == "http" and not loopback:
        raise Unreachable("http:// hors de la boucle locale : https:// attendu")
    if not allow_private and not all(is_public(a) for a in found):
        raise Unreachable(
            f"adresse privée ou interne ({target.host}) : seul un administrateur peut "
            "l'autoriser (PASSERELLE_WEBHOOK_ALLOW_PRIVATE)"
        )
    return found


def check(url: str, allow_private: bool, loc: list[str | int]) -> str:
    """A new subscription's URL, normalised, or 422 in French. It resolves the host
    (blocking: call it from a thread)."""
    target = parse(url, loc)
    try:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unreachable(f"hôte introuvable : {target.host}") from exc
        _vet(target, list(infos), allow_private)
    except Unreachable as exc:
        raise invalid(loc, f"Webhook refusé : {exc}.") from exc
    return str(target.url)


async def _addresses(target: Target, allow_private: bool) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unreachable(f"hôte introuvable : {target.host}") from exc
    return _vet(target, list(infos), allow_private)


async def post(
    client: httpx.AsyncClient,
    url: str,
    content: str,
    headers: dict[str, str],
    allow_private: bool,
) -> int:
    """POSTs to the address that was checked (a second lookup could answer another: DNS
    rebinding), the name kept for the Host header and TLS (SNI and the certificate), within
    DEADLINE_SECONDS in all, reading ANSWER_BYTES of the answer at most. Its status code;
    Unreachable, httpx.HTTPError or TimeoutError otherwise."""
    try:
        target = parse(url, ["url"])
    except Exception as exc:  # stored before this check existed: it can never be sent
        raise Unreachable("adresse de webhook invalide", final=True) from exc
    async with asyncio.timeout(DEADLINE_SECONDS):
        found = await _addresses(target, allow_private)
        pinned = target.url.copy_with(host=found[0])
        host_header = target.url.netloc.decode("ascii")
        if "@" in host_header:
            host_header = host_header.rsplit("@", 1)[1]
        request = client.build_request(
            "POST",
            pinned,
            content=content,
            headers={**headers, "host": host_header},
            extensions={"sni_hostname": target.host},
        )
        answer = await client.send(request, stream=True)
        try:
            read = 0
            async for chunk in answer.aiter_raw():
                read += len(chunk)
                if read >= ANSWER_BYTES:
                    break
        finally:
            await answer.aclose()
        return answer.status_code
