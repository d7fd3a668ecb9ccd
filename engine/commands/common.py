"""Helpers shared by the `rsseg` commands."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from engine import cli_checks
from engine.errors import Cancelled, UserError


def load_model(name_or_path: str, input_scale: float | None):
    """(label, checkpoint) of a shipped model name or checkpoint path; `--input-scale` replaces the spec's zoom."""
    from engine.zoo import resolve_model

    label, ckpt = resolve_model(name_or_path)
    if cli_checks.input_scale(input_scale) is None:
        return label, ckpt
    return label, replace(ckpt, spec=ckpt.spec.with_updates(input_scale=input_scale))


@contextmanager
def reported(reporter) -> Iterator[None]:
    """A command's failure also goes to its Reporter as an "error" event (JSON-lines mode), then on as raised."""
    try:
        yield
    except UserError as exc:
        reporter.error(str(exc))
        raise
    except (Cancelled, KeyboardInterrupt):
        reporter.error("cancelled")
        raise
    except Exception as exc:
        reporter.error(f"{type(exc).__name__}: {exc}")
        raise

