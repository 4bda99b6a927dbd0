#!/usr/bin/env bash
# Vendors the dashboard's front-end libraries into static/vendor/ (run by `make ui-vendor`).
#
# npm ci installs exactly what package-lock.json pins (checking each package's integrity hash) in
# a temporary copy, so no node_modules/ ever lands in the repository; the minified files and
# their licences are copied into static/vendor/, which is committed: `go build` never needs npm.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
VENDOR=$HERE/static/vendor
command -v npm >/dev/null 2>&1 || { echo "ui-vendor: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$HERE/package.json" "$HERE/package-lock.json" "$tmp/"
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

mkdir -p "$VENDOR"
uplot=$tmp/node_modules/uplot
cp "$uplot/dist/uPlot.iife.min.js" "$uplot/dist/uPlot.min.css" "$VENDOR/"
cp "$uplot/LICENSE" "$VENDOR/uPlot.LICENSE.txt"
echo "ui-vendor: uPlot $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$uplot/package.json") -> ${VENDOR#"$PWD/"}"
