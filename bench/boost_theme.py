"""A theme of a real Boost theme's size for the benches that serve the Moodle 5.0 sample.

The sample's one-rule theme stand-in (tests/browser/moodle_sample.py) costs Chromium next to
no style and layout work; a real Moodle 5.0 Boost theme is Bootstrap 5.3, Font Awesome 6 and
Moodle's own rules in one stylesheet of several hundred KB. This serves, at the sample's theme
URL, Font Awesome Free 6's `css/all.css` (its webfonts where its `../webfonts/` URLs resolve
from there), Bootstrap 5.3's compiled `dist/css/bootstrap.css`, a few of Moodle's own rules
(MOODLE_RULES) and the stand-in rule, and at the YUI CSS link the skins Moodle's
yui_combo.php rolls up for `yui-moodlesimple.css`. The rest of Moodle's own rules (about
as much again as Bootstrap) is not on npm and is left out.

The npm packages (pinned) are installed on first use into the project's cache, beside the
MathJax copies of scripts/setup.sh; nothing of them is committed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.render_bench import NODE_MODULES
from tests.browser.moodle_sample import THEME_PATH, THEME_STAND_IN
from tests.browser.server import LoopbackServer

THEMES = ("stand-in", "bootstrap")
PACKAGES = ("bootstrap@5.3.3", "@fortawesome/fontawesome-free@6.7.2", "yui@3.18.1")
CACHE_DIR = NODE_MODULES.parents[1] / "npm-theme"  # beside setup.sh's npm (MathJax)
# A few of Moodle's own rules, written for this bench after what Boost does (not copied):
# what the sample hides (without `.hidden` Bootstrap draws the closed message drawer as three
# more pages of buttons) and how a question's info box sits beside its content.
MOODLE_RULES = """
.hidden { display: none; }
.accesshide { position: absolute; left: -10000px; font-weight: normal; font-size: 1em; }
.dir-ltr .dir-ltr-hide, .dir-rtl .dir-rtl-hide { display: none; }
.que { clear: left; text-align: left; margin: 0 auto 1.8em auto; }
.que .info { float: left; width: 7em; padding: 0.5em; margin-bottom: 1.8em;
  background-color: #f8f9fa; border: 1px solid #dee2e6; border-radius: 0.5rem; }
.que .info h3.no { font-size: 0.8rem; line-height: 1; }
.que .info .qno { font-size: 1.5em; font-weight: bold; display: block; }
.que .content { margin: 0 0 0 8.5em; }
.que .formulation, .que .outcome, .que .comment { padding: 1rem; margin-bottom: 0.5rem;
  border: 1px solid transparent; border-radius: 0.5rem; }
.que .formulation { background-color: #e7f3f5; border-color: #b8dce2; color: #001a1e; }
.que .outcome { background-color: #fcefdc; border-color: #fbe6c5; color: #273240; }
.que .history { padding: 0.5rem; border: 1px solid #dee2e6; }
.que .correct { color: #357a32; }
.que .incorrect { color: #ca3120; }
"""
# The skins of the YUI modules in yui_combo.php's yui-moodlesimple rollup that have one.
YUI_SKINS = ("widget-base", "widget-stack", "overlay", "widget-modality", "panel")
YUI_COMBO_PATH = "/theme/yui_combo.php"  # the server matches paths without the query
# What Moodle's theme/font.php and yui_combo.php send with their answers.
CACHE_CONTROL = {"Cache-Control": "public, max-age=31104000"}


def installed(cache_dir: Path = CACHE_DIR) -> Path:
    """node_modules with PACKAGES, installed with npm unless already there."""
    stamp = cache_dir / ".installed"
    if stamp.is_file() and stamp.read_text() == " ".join(PACKAGES):
        return cache_dir / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("--theme bootstrap needs npm (to install " + ", ".join(PACKAGES) + ")")
    print(f"installing {', '.join(PACKAGES)} from npm into {cache_dir}", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "package.json").write_text('{"name": "mao-bench-theme", "private": true}\n')
    subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--ignore-scripts", *PACKAGES],
        cwd=cache_dir, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    stamp.write_text(" ".join(PACKAGES))
    return cache_dir / "node_modules"


def theme_css(node_modules: Path) -> str:
    """Font Awesome, Bootstrap, Moodle's rules above and the stand-in's: one stylesheet."""
    parts = (
        node_modules / "@fortawesome/fontawesome-free/css/all.css",
        node_modules / "bootstrap/dist/css/bootstrap.css",
    )
    return "\n".join([*(p.read_text("utf-8") for p in parts), MOODLE_RULES, THEME_STAND_IN])


def yui_css(node_modules: Path) -> str:
    return "\n".join(
        (node_modules / "yui" / m / "assets/skins/sam" / f"{m}.css").read_text("utf-8")
        for m in YUI_SKINS
    )


def serve_bootstrap_theme(server: LoopbackServer, node_modules: Path) -> None:
    """Serve the theme over the stand-in (call after serve_moodle_stand_in)."""
    server.serve(THEME_PATH, theme_css(node_modules), "text/css", headers=CACHE_CONTROL)
    server.serve(YUI_COMBO_PATH, yui_css(node_modules), "text/css", headers=CACHE_CONTROL)
    # all.css asks for url("../webfonts/fa-solid-900.woff2"): from the theme URL
    # /theme/styles.php/boost/<revisions>/all that is /theme/styles.php/boost/webfonts/.
    fonts = THEME_PATH.rsplit("/", 2)[0] + "/webfonts/"
    server.mounts[fonts] = node_modules / "@fortawesome/fontawesome-free/webfonts"
    server.extra_headers[fonts] = CACHE_CONTROL
