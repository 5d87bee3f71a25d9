import io

import pytest
from PIL import Image, PngImagePlugin

from inference_service.domain.images import ImageTooLarge, InvalidImage, inspect_image
from tests.malformed_images import png_of_zeros

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48) -> Image.Image:
    return Image.linear_gradient("L").resize((width, height)).convert("RGB")


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("BMP", "image/bmp"), ("WEBP", "image/webp")],
)
def test_accepted_formats_are_described(fmt: str, media_type: str) -> None:
    data = encode(photo(), fmt)
    info = inspect_image(data, **LIMITS)
    assert (info.media_type, info.width, info.height, info.size) == (media_type, 64, 48, len(data))
    assert len(info.sha256) == 64


def test_zero_bytes_are_refused() -> None:
    with pytest.raises(InvalidImage) as raised:
        inspect_image(b"", **LIMITS)
    assert raised.value.code == "empty-image"


def test_text_is_not_an_image() -> None:
    with pytest.raises(InvalidImage) as raised:
        inspect_image(b"hello, I am not a picture", **LIMITS)
    assert raised.value.code == "unsupported-image-type"


def test_a_format_we_do_not_take_is_refused() -> None:
    data = encode(photo(), "PPM")
    with pytest.raises(InvalidImage) as raised:
        inspect_image(data, **LIMITS)
    assert raised.value.code == "unsupported-image-type"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_image_is_corrupt(fmt: str) -> None:
    data = encode(photo(640, 480), fmt)
    with pytest.raises(InvalidImage) as raised:
        inspect_image(data[: len(data) // 2], **LIMITS)
    assert raised.value.code == "corrupt-image"


def test_a_png_with_a_broken_checksum_is_corrupt() -> None:
    data = bytearray(encode(photo(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    with pytest.raises(InvalidImage) as raised:
        inspect_image(bytes(data), **LIMITS)
    assert raised.value.code == "corrupt-image"


def test_over_the_byte_limit() -> None:
    data = encode(photo(), "PNG")
    with pytest.raises(ImageTooLarge) as raised:
        inspect_image(data, max_bytes=len(data) - 1, max_pixels=LIMITS["max_pixels"])
    assert raised.value.code == "image-too-large"


def test_over_the_pixel_limit() -> None:
    data = encode(photo(100, 100), "PNG")
    with pytest.raises(ImageTooLarge) as raised:
        inspect_image(data, max_bytes=LIMITS["max_bytes"], max_pixels=9_999)
    assert raised.value.code == "too-many-pixels"


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    # 20000 x 20000 single-colour pixels compress to a few hundred KB of PNG: 400 MP when
    # decoded, ten times the limit and past Pillow's own bomb threshold.
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG", optimize=True)
    assert len(bomb) < LIMITS["max_bytes"]
    with pytest.raises(ImageTooLarge) as raised:
        inspect_image(bomb, **LIMITS)
    assert raised.value.code == "too-many-pixels"


def test_a_real_decompression_bomb_is_refused_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_decoding(_image: object) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    with pytest.raises(ImageTooLarge) as raised:
        inspect_image(png_of_zeros(10_000, 10_000), **LIMITS)
    assert raised.value.code == "too-many-pixels"


def test_a_camera_jpeg_with_a_second_picture_is_a_jpeg() -> None:
    data = encode(photo(), "MPO", save_all=True, append_images=[photo().rotate(180)])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert inspect_image(data, **LIMITS).media_type == "image/jpeg"


def test_the_size_recorded_is_the_upright_one() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise
    data = encode(photo(64, 48), "JPEG", exif=exif.tobytes())
    info = inspect_image(data, **LIMITS)
    assert (info.width, info.height) == (48, 64)
