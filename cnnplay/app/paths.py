"""Where cnnplay keeps its files: app data (autosave, settings, log) and caches.

`CNNPLAY_HOME` overrides the app-data folder (tests, portable installs);
otherwise Qt's AppDataLocation for this platform is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, QStandardPaths

APP_NAME = "cnnplay"
ORG_NAME = "cnnplay"


def _ensure(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return path


def app_data_dir() -> Path:
    """The folder for the autosave, settings and log file (created if missing)."""
    home = os.environ.get("CNNPLAY_HOME")
    if home:
        return _ensure(Path(home).expanduser())
    if not QCoreApplication.applicationName():
        QCoreApplication.setApplicationName(APP_NAME)
    if not QCoreApplication.organizationName():
        QCoreApplication.setOrganizationName(ORG_NAME)
    loc = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return _ensure(Path(loc) if loc else Path.home() / ".cnnplay")


def cache_dir() -> Path:
    """The folder for caches (compiled kernels live in the core's platform cache folder)."""
    home = os.environ.get("CNNPLAY_HOME")
    if home:
        return _ensure(Path(home).expanduser() / "cache")
    from ..core.kernels import platform_cache_dir
    return _ensure(Path(platform_cache_dir()) / APP_NAME)


def autosave_path() -> Path:
    return app_data_dir() / "autosave.cnnplay"


def autosave_input_path() -> Path:
    return app_data_dir() / "autosave-input.npy"


def log_path() -> Path:
    return app_data_dir() / "cnnplay.log"


def settings() -> QSettings:
    """Preferences and recent files, stored as an ini file under the app-data folder."""
    return QSettings(str(app_data_dir() / "settings.ini"), QSettings.Format.IniFormat)
