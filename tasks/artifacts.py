"""Publishing run outputs on the Prefect Artifacts page."""

from __future__ import annotations

import base64
from pathlib import Path

from prefect.artifacts import create_markdown_artifact


def markdown_with_image(key: str, title: str, image: Path, body: str = "") -> None:
    """A Markdown artifact with the PNG inlined, so the Prefect UI shows it without a file server."""
    encoded = base64.b64encode(image.read_bytes()).decode()
    create_markdown_artifact(key=key, markdown=f"## {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n{body}")
