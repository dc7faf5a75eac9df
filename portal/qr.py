import segno


def qr_svg(data: str) -> str:
    """A QR code as inline SVG, for paying on a phone from a desktop page (WeChat Native)."""
    return segno.make(data, error="m").svg_inline(scale=6, border=2, dark="#1b1f24")
