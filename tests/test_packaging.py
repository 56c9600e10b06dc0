"""The documented ways in: pip install (library + CLI), FIFTYONE_PLUGINS_DIR, and ``fiftyone plugins download``."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent
OPERATORS = ["@marlin/marlin/caption", "@marlin/marlin/find", "@marlin/marlin/evaluate",
             "@marlin/marlin/import_annotations", "@marlin/marlin/review_errors",
             "@marlin/marlin/export_annotations", "@marlin/marlin/search"]  # open_view is unlisted (buttons only)


def run(cmd, cwd=None, **env):
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_pip_install_gives_library_and_cli(tmp_path):
    target = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO)])
    assert (target / "marlin_core" / "contract.py").is_file()
    assert (target / "marlin_core" / "video" / "decode.py").is_file(), "subpackages must be listed in pyproject.toml"
    assert not (target / "operators").exists(), "the plugin glue is not part of the library"
    code = "import marlin_core, marlin_core.contract as c; print(marlin_core.__file__); print(c.CAPTION_PROMPT)"
    out = run([sys.executable, "-c", code], cwd=tmp_path, PYTHONPATH=str(target))
    assert out.startswith(str(target))
    help_text = run([str(target / "bin" / "marlin-core"), "--help"], cwd=tmp_path, PYTHONPATH=str(target))
    assert "caption" in help_text and "find" in help_text


def test_plugins_dir_lists_the_operators(tmp_path):
    (tmp_path / "fiftyone-marlin").symlink_to(REPO)
    out = run([str(BIN / "fiftyone"), "operators", "list"], FIFTYONE_PLUGINS_DIR=str(tmp_path))
    for uri in OPERATORS:
        assert uri in out


def test_plugins_download_from_an_archive(tmp_path):
    archive = tmp_path / "serve" / "fiftyone-marlin.zip"
    archive.parent.mkdir()
    # the committed tree, as GitHub serves it; the working tree's uncommitted files are not part of it
    run(["git", "-C", str(REPO), "archive", "--format=zip", "--prefix=fiftyone-marlin/", "-o", str(archive),
         "HEAD"])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plugins = tmp_path / "plugins"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
        run([str(BIN / "fiftyone"), "plugins", "download", url], FIFTYONE_PLUGINS_DIR=str(plugins))
    finally:
        server.shutdown()
    assert any(path.name == "fiftyone.yml" for path in plugins.rglob("fiftyone.yml"))
    assert any(plugins.rglob("operators/app/refresh_modal.js")), "the App half (fiftyone.yml js_bundle) ships too"
    out = run([str(BIN / "fiftyone"), "operators", "list"], FIFTYONE_PLUGINS_DIR=str(plugins))
    for uri in OPERATORS:
        assert uri in out
