"""The rules in force: re-read from the config file when it changes, without restarting anything.

Whoever routes asks :meth:`RuleBook.current` once per study; that call compares the file's stat
signature with the last one read (a few microseconds) and re-reads the file only when it changed.
An invalid new file is logged and ignored: the last valid rules stay in force, so a typo in an edit
never stops routing. Associations are never touched: the SCP keeps running throughout.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from radrouter.config.rules import Rule
from radrouter.config.settings import Destination, Settings, load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingConfig:
    """One consistent snapshot of what routing needs: rules, destinations and the orientation tolerance."""

    rules: tuple[Rule, ...]
    destinations: dict[str, Destination]
    tolerance_deg: float
    generation: int = 0

    @classmethod
    def of(cls, settings: Settings, generation: int = 0) -> RoutingConfig:
        return cls(
            tuple(settings.rules),
            dict(settings.destinations),
            settings.routing.orientation_tolerance_deg,
            generation,
        )


class RuleBook:
    """Hands out the current :class:`RoutingConfig`, reloading ``config_file`` when it has changed."""

    def __init__(self, settings: Settings, config_file: Path | None) -> None:
        self._config = RoutingConfig.of(settings)
        self._file = config_file if settings.routing.reload else None
        self._signature = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        if self._file is None:
            return None
        try:
            stat = self._file.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def current(self) -> RoutingConfig:
        with self._lock:
            signature = self._stat()
            if self._file is not None and signature is not None and signature != self._signature:
                self._signature = signature
                self._reload(self._file)
            return self._config

    def _reload(self, path: Path) -> None:
        generation = self._config.generation + 1
        try:
            settings = load_settings(path)
        except (ValidationError, yaml.YAMLError, OSError) as error:
            log.error("%s changed but is invalid; keeping the previous rules: %s", path, error)
            return
        self._config = RoutingConfig.of(settings, generation)
        log.info("rules reloaded from %s: %d rule(s), generation %d", path, len(settings.rules), generation)
