#!/usr/bin/env bash
# Fetches a pinned npm package into .cache/fhir/<name>/ once, refusing it
# unless its SHA-1 matches the registry's published shasum pinned by the caller.
set -euo pipefail
name=$1 version=$2 sha1=$3
dest=".cache/fhir/$name"
[ -f "$dest/.ok-$version" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$name@$version" >/dev/null 2>&1)
tgz=$(ls "$tmp"/*.tgz)
echo "$sha1  $tgz" | sha1sum --check --quiet
rm -rf "$dest"
mkdir -p "$dest"
tar xzf "$tgz" -C "$dest"
touch "$dest/.ok-$version"
