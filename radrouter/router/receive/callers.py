"""The calling AE allow-list: which titles may associate, and from which addresses.

Titles are compared as sent, less only their trailing padding (PS3.8 9.3.2); an entry that names
hosts admits its title only from those addresses or networks (as Orthanc's ``DicomCheckModalityHost``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from radrouter.config.settings import CallingAE

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowedCallers:
    """The allow-list of ``node.allowed_calling_aes``; empty admits every caller."""

    def __init__(self, entries: Sequence[str | CallingAE]) -> None:
        #: Title -> the networks it may call from; None: from any address.
        self._from: dict[str, list[_Network] | None] = {}
        for entry in entries:
            if isinstance(entry, str):
                self._from[entry.rstrip(" ")] = None
            else:
                title = entry.ae_title.rstrip(" ")
                if title not in self._from or self._from[title] is not None:
                    self._from[title] = [*(self._from.get(title) or []), *entry.hosts]

    def __bool__(self) -> bool:
        return bool(self._from)

    @property
    def titles(self) -> list[str]:
        return list(self._from)

    def refusal(self, title: str | None, address: str) -> str | None:
        """Why ``title`` calling from ``address`` is refused, or None when it is admitted."""
        if title is None or title not in self._from:
            return f"calling AE title {title!r} is not on the allow-list"
        networks = self._from[title]
        if networks is None:
            return None
        try:
            caller = ipaddress.ip_address(address)
        except ValueError:
            return f"calling AE title {title!r} came from {address!r}, not an IP address"
        if isinstance(caller, ipaddress.IPv6Address) and caller.ipv4_mapped is not None:
            caller = caller.ipv4_mapped
        if any(caller in network for network in networks):
            return None
        return f"calling AE title {title!r} may not call from {address}"
