#!/usr/bin/env bash
# Prepare this machine for the project: Debian packages, the Python venv, MathJax for the fake Moodle.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${MOODLE_ARCHIVER_CACHE_DIR:-$HOME/.cache/moodle-archive-operator}"
PY="${PYTHON:-python3}"
# chromium-headless-shell renders (the runner's default); chromium is the previous default, which
# the benches compare against.
APT_PACKAGES=(chromium-headless-shell chromium ghostscript poppler-utils openjdk-17-jre-headless maven fonts-liberation fonts-dejavu-core fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[control-plane,test]'
  touch "$stamp"
fi

mathjax_dir="$CACHE_DIR/npm"
if [ ! -f "$mathjax_dir/.installed" ]; then
  echo "setup: installing MathJax 2, 3 and 4 from npm into $mathjax_dir"
  mkdir -p "$mathjax_dir"
  (cd "$mathjax_dir" && [ -f package.json ] || echo '{"name":"mao-mathjax","private":true}' > package.json)
  (cd "$mathjax_dir" && npm install --silent --no-audit --no-fund \
     mathjax2@npm:mathjax@2.7.9 mathjax3@npm:mathjax@3.2.2 mathjax4@npm:mathjax@4 >/dev/null)
  touch "$mathjax_dir/.installed"
fi
echo "setup: ready (.venv, Chromium $(chromium-headless-shell --version 2>/dev/null | awk '{print $2}'), MathJax in $mathjax_dir)"
