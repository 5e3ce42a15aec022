"""Where the config tree lives: inside the package when installed as a wheel, beside it in
a source checkout (editable install or `python -m` from the repository)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"mnist_sweep's conf/ folder was not found beside {PACKAGE_DIR}; "
                            f"reinstall the package (pip install mnist_sweep).")
