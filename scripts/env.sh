# Sourced by scripts/demo and scripts/test: create (once) .venv with the project installed for $EXTRAS.
# Re-running is cheap: the install is skipped while pyproject.toml and the extras are unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.clipsearch-install-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS:-none}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
  rm -f .venv/.clipsearch-install-*
  touch "$stamp"
fi
export GRADIO_ANALYTICS_ENABLED=False
