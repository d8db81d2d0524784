"""Import user code named as ``package.module:function`` (model factories, data loaders, Flower
clients): the code comes from a package the operator installed, never from the task."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from flchain.errors import ConfigError


def import_target(target: str, what: str, hint: str = "") -> Callable[..., Any]:
    """The callable ``target`` names; a :class:`ConfigError` naming ``what`` when it cannot be
    imported (``hint`` says what to install)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what} must look like 'package.module:function', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = f" ({hint})" if hint else ""
        raise ConfigError(f"cannot import {what} {target!r}: {exc}{extra}") from exc
    except Exception as exc:  # the module itself failed while importing: report, don't crash
        raise ConfigError(
            f"importing {what} {target!r} failed: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    found = getattr(module, attr, None)
    if not callable(found):
        raise ConfigError(f"{what} {target!r}: module {module_name!r} has no callable {attr!r}")
    return found  # type: ignore[no-any-return]


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (errors are printed one per line)."""
    return " ".join(str(exc).split())[:300]
