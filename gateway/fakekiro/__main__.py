"""Allow `python -m gateway.fakekiro --port N --scenario NAME`."""

from __future__ import annotations

from gateway.fakekiro.server import main

main()
