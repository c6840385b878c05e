"""Workflow thumbnails: a small JPEG of the graph (node boxes at their UI positions, coloured links, the title).

Used by assets/make_workflows.py; needs Pillow, not ComfyUI. Deterministic for a given Pillow.
"""

from __future__ import annotations

import io

from video_enhance_kit.nodes._registry import PREFIX

THUMB_WIDTH = 768
THUMB_MAX_HEIGHT = 512
BANNER = 56
SLOT_GAP = 22
BACKGROUND = (32, 32, 34)
NODE_BODY = (53, 53, 56)
NODE_TITLE = (70, 70, 74)
PACK_TITLE = (46, 104, 140)  # the pack's own nodes stand out
NOTE_BODY = (64, 60, 40)
TEXT = (230, 230, 230)
LINK_COLOURS = {  # ComfyUI's default link colours
    "MODEL": (179, 157, 219), "CLIP": (255, 213, 0), "VAE": (255, 110, 110), "LATENT": (255, 156, 249),
    "IMAGE": (100, 181, 246), "MASK": (129, 199, 132), "CONDITIONING": (255, 169, 49), "VIDEO": (120, 200, 200),
    "NOISE": (176, 176, 176), "GUIDER": (102, 204, 170), "SAMPLER": (236, 182, 99), "SIGMAS": (205, 255, 205),
    "INT": (41, 105, 157), "FLOAT": (170, 238, 136), "STRING": (119, 221, 119),
}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: bundled scalable font, same everywhere
    except TypeError:
        return ImageFont.load_default()


def _socket_rows(node: dict) -> tuple[list[int | None], int]:
    """Visible input rows (link id or None for each socket drawn) and the number of outputs."""
    rows = [i.get("link") for i in node.get("inputs", []) if "widget" not in i or i.get("link") is not None]
    return rows, len(node.get("outputs", []))


def _bezier(p0, p3, steps: int = 24):
    (x0, y0), (x3, y3) = p0, p3
    dx = max(40.0, abs(x3 - x0) * 0.5)
    p1, p2 = (x0 + dx, y0), (x3 - dx, y3)
    pts = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
        pts.append((a * x0 + b * p1[0] + c * p2[0] + d * x3, a * y0 + b * p1[1] + c * p2[1] + d * y3))
    return pts


def _wrap(draw, text: str, font, max_width: float) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels."""
    lines, current = [], ""
    for word in text.split(" "):
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > max_width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


class _Canvas:
    """The picture being drawn: graph coordinates -> pixels (scaled to fit under the title banner)."""

    def __init__(self, ui: dict):
        from PIL import Image, ImageDraw

        nodes = ui["nodes"]
        x0 = min(n["pos"][0] for n in nodes) - 40
        y0 = min(n["pos"][1] for n in nodes) - 60
        for g in ui.get("groups", []):
            x0, y0 = min(x0, g["bounding"][0] - 20), min(y0, g["bounding"][1] - 20)
        x1 = max(n["pos"][0] + n["size"][0] for n in nodes) + 40
        y1 = max(n["pos"][1] + n["size"][1] for n in nodes) + 40
        self.x0, self.y0 = x0, y0
        self.scale = min(THUMB_WIDTH / (x1 - x0), (THUMB_MAX_HEIGHT - BANNER) / (y1 - y0), 1.0)
        self.width = THUMB_WIDTH
        self.height = int(min(THUMB_MAX_HEIGHT, BANNER + (y1 - y0) * self.scale + 8))
        self.offset_x = (self.width - (x1 - x0) * self.scale) / 2
        self.img = Image.new("RGB", (self.width, self.height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.img)

    def tx(self, x, y):
        return self.offset_x + (x - self.x0) * self.scale, BANNER + (y - self.y0) * self.scale

    def out_pos(self, node, slot):
        return self.tx(node["pos"][0] + node["size"][0], node["pos"][1] + 30 + SLOT_GAP * slot + 11)

    def in_pos(self, node, link_id):
        rows, _ = _socket_rows(node)
        row = rows.index(link_id) if link_id in rows else 0
        return self.tx(node["pos"][0], node["pos"][1] + 30 + SLOT_GAP * row + 11)


def _draw_groups(c: _Canvas, groups: list[dict]) -> None:
    for g in groups:
        gx, gy, gw, gh = g["bounding"]
        colour = tuple(int(g.get("color", "#3f789e")[i:i + 2], 16) for i in (1, 3, 5))
        fill = tuple(int(0.35 * v + 0.65 * b) for v, b in zip(colour, BACKGROUND))
        c.draw.rounded_rectangle([*c.tx(gx, gy), *c.tx(gx + gw, gy + gh)], radius=6, fill=fill, outline=colour)
        c.draw.text(c.tx(gx + 8, gy + 6), g["title"], fill=TEXT, font=_font(max(9, int(22 * c.scale))))


def _draw_note_text(c: _Canvas, node: dict) -> None:
    (nx, ny), (w, h), scale = node["pos"], node["size"], c.scale
    small = _font(max(8, int(15 * scale)))
    text = node.get("widgets_values", [""])[0]
    for mark in ("#", "*", "`", "_"):
        text = text.replace(mark, "")
    lines = _wrap(c.draw, " ".join(text.split()), small, (w - 20) * scale)
    line_h = max(9, int(20 * scale))
    for j, line in enumerate(lines[: max(1, int((h - 40) * scale / line_h))]):
        c.draw.text(c.tx(nx + 10, ny + 38 + j * line_h / scale), line, fill=(200, 200, 190), font=small)


def _draw_sockets(c: _Canvas, node: dict) -> None:
    (nx, ny) = node["pos"]
    rows, n_out = _socket_rows(node)
    r = max(1.5, 4 * c.scale)
    for i, link in enumerate(rows):
        cx, cy = c.tx(nx, ny + 30 + SLOT_GAP * i + 11)
        c.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(150, 150, 150) if link is None else (220, 220, 220))
    for i in range(n_out):
        cx, cy = c.out_pos(node, i)
        c.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(220, 220, 220))


def _draw_node(c: _Canvas, node: dict, object_info: dict, title_font) -> None:
    (nx, ny), (w, h), scale = node["pos"], node["size"], c.scale
    note = node["type"] in ("MarkdownNote", "Note")
    c.draw.rounded_rectangle([*c.tx(nx, ny), *c.tx(nx + w, ny + h)], radius=max(2, int(8 * scale)),
                             fill=NOTE_BODY if note else NODE_BODY)
    colour = PACK_TITLE if node["type"].startswith(PREFIX) else (NOTE_BODY if note else NODE_TITLE)
    c.draw.rounded_rectangle([*c.tx(nx, ny), *c.tx(nx + w, ny + 30)], radius=max(2, int(8 * scale)), fill=colour)
    label = node.get("title") or object_info.get(node["type"], {}).get("display_name") or node["type"]
    max_chars = max(4, int(w * scale / max(5.0, 11 * scale)))
    if len(label) > max_chars:
        label = label[: max_chars - 1] + "…"
    c.draw.text(c.tx(nx + 10, ny + 5), label, fill=TEXT, font=title_font)
    (_draw_note_text if note else _draw_sockets)(c, node)


def _draw_links(c: _Canvas, ui: dict) -> None:
    by_id = {n["id"]: n for n in ui["nodes"]}
    line_w = max(1, round(3 * c.scale))
    for link_id, src, src_slot, dst, _dst_slot, ltype in ui.get("links", []):
        if src not in by_id or dst not in by_id:
            continue
        colour = LINK_COLOURS.get(str(ltype), (160, 160, 160))
        c.draw.line(_bezier(c.out_pos(by_id[src], src_slot), c.in_pos(by_id[dst], link_id)), fill=colour, width=line_w,
                    joint="curve")


def _draw_banner(c: _Canvas, title: str) -> None:
    draw, width = c.draw, c.width
    draw.rectangle([0, 0, width, BANNER - 8], fill=(24, 24, 26))
    label_font, label = _font(12), "video-enhance-kit"
    room = width - 32 - draw.textlength(label, font=label_font) - 16
    size = 22
    while size > 11 and draw.textlength(title, font=_font(size)) > room:
        size -= 1
    shown = title
    while draw.textlength(shown, font=_font(size)) > room and len(shown) > 4:
        shown = shown[:-2] + "…"
    draw.text((16, 10 + (22 - size) // 2), shown, fill=(255, 255, 255), font=_font(size))
    draw.text((width - 16 - draw.textlength(label, font=label_font), 30), label, fill=(130, 170, 200), font=label_font)


def render_thumbnail(ui: dict, title: str, object_info: dict | None = None):
    """A Pillow image of the graph: node boxes at their UI positions with titles, coloured links, the title.

    Nodes first, links on top (the frontend draws them under; on top reads better small).
    """
    c = _Canvas(ui)
    _draw_groups(c, ui.get("groups", []))
    title_font = _font(max(9, int(20 * c.scale)))
    for node in ui["nodes"]:
        _draw_node(c, node, object_info or {}, title_font)
    _draw_links(c, ui)
    _draw_banner(c, title)
    return c.img


def thumbnail_bytes(ui: dict, title: str, object_info: dict | None = None) -> bytes:
    """The JPEG bytes of :func:`render_thumbnail` (deterministic for a given Pillow)."""
    buf = io.BytesIO()
    render_thumbnail(ui, title, object_info).save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()
