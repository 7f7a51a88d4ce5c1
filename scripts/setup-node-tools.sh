#!/usr/bin/env bash
# Installs the Node packages some tests use as independent oracles into a cache folder outside the
# checkout: @huggingface/jinja (chat_test renders the publishers' chat templates with it).
# Idempotent; offline-safe: without node/npm or a registry it says so and exits 0, and those test
# cases skip. The folder is ${FRUGAL_NODE_DIR:-$HOME/.cache/frugal-node}; tests read the same variable.
set -uo pipefail

dir=${FRUGAL_NODE_DIR:-$HOME/.cache/frugal-node}
packages=(@huggingface/jinja@0.5.11)

if ! command -v npm >/dev/null; then
    echo "setup-node-tools: npm not found; tests that need Node packages will be skipped" >&2
    exit 0
fi
missing=()
for p in "${packages[@]}"; do
    name=${p%@*}
    version=${p##*@}
    installed=$(node -p "require('$dir/node_modules/$name/package.json').version" 2>/dev/null)
    [[ $installed == "$version" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then exit 0; fi

mkdir -p "$dir"
echo "setup-node-tools: installing ${missing[*]} into $dir" >&2
if ! npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "${missing[@]}"; then
    echo "setup-node-tools: npm install failed (offline?); tests that need Node packages will be skipped" >&2
fi
exit 0
