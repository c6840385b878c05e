"""``python -m video_enhance_kit run|doctor``: see :mod:`video_enhance_kit.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
