"""Detections drawn on the uploaded image with Pillow, from the result's `box_pixels`."""

from __future__ import annotations

import io
from typing import Any, Final

from PIL import Image, ImageDraw, ImageFont

BOX_COLOURS: Final = ("#ff3b30", "#34c759", "#007aff", "#ff9500", "#af52de", "#00c7be")


def open_rgb(data: bytes) -> Image.Image:
    """The first frame, in RGB (GIF, palette and grayscale images included)."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        return image.convert("RGB")


def draw_detections(data: bytes, detections: list[dict[str, Any]]) -> Image.Image:
    """A copy of the image with each detection boxed and labelled `n. label score`."""
    image = open_rgb(data)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    font = ImageFont.load_default(size=max(12, round(max(image.size) / 40)))
    for number, detection in enumerate(detections, start=1):
        box = detection["box_pixels"]
        colour = BOX_COLOURS[(number - 1) % len(BOX_COLOURS)]
        corners = (box["left"], box["top"], box["right"], box["bottom"])
        draw.rectangle(corners, outline=colour, width=width)
        caption = f"{number}. {detection['label']} {float(detection['score']):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        x, y = box["left"], max(0, box["top"] - (bottom - top) - 2 * width)
        draw.rectangle((x, y, x + right - left + 2 * width, y + bottom + width), fill=colour)
        draw.text((x + width, y), caption, fill="white", font=font)
    return image


def for_display(image: Image.Image, min_side: int = 280) -> Image.Image:
    """Tiny images (a 28x28 digit) scaled up by a whole factor, pixels kept sharp."""
    factor = min_side // max(1, min(image.size))
    if factor <= 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
