#!/bin/sh
# Build a wheelhouse for hosts that cannot reach PyPI: chiffon's wheel, the exact dependency set uv.lock pins
# (no dev group, no extras unless named), their hashes, and one tarball of it all for the install playbook.
#
#   deploy/wheelhouse.sh DIR [EXTRA ...]        # then: ansible-playbook ... -e chiffon_wheelhouse=DIR/wheelhouse.tar
#
# The wheels are the ones PyPI has for the Python that runs this script ($PYTHON, default python3): its version
# and platform must be the hosts' (the playbook refuses a host whose python3 differs in major.minor). Run it where
# PyPI is reachable; the hosts then need only python3 with venv and pip (Debian: python3-venv).
# The hosts install requirements.txt with --no-deps, as `uv sync --frozen` would: the lock drops
# sentence-transformers (pyproject's override-dependencies), which plain `pip install chiffon` would follow to a
# multi-GB CUDA torch. EXTRA (voice, collections, ...) adds an extra's locked packages: not yet tried on the lab
# hosts, and an extra with a package PyPI has only as source (llamacpp's llama-cpp-python) cannot be built here.
set -eu
out=${1:?usage: deploy/wheelhouse.sh DIR [EXTRA ...]}
shift
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
extras=""
for extra in "$@"; do extras="$extras --extra $extra"; done
# shellcheck disable=SC2086  # word splitting of $extras is wanted
(cd "$here" && uv export -q --frozen --no-dev --no-emit-project $extras --format requirements-txt \
    -o "$out/requirements.txt")
# Download what any python of this major.minor needs: a marker on the micro version (async-timeout for
# python_full_version < '3.11.3') must not drop a wheel that Debian 12's 3.11.2 installs when the wheelhouse is built
# with 3.11.7. The hosts evaluate the markers again when they install. (pip's own copy of packaging reads them.)
"$python" - "$out/requirements.txt" "$out/download.txt" <<'PY'
import re, sys
from pip._vendor.packaging.markers import Marker, default_environment

text = open(sys.argv[1]).read()
minor = "%d.%d" % sys.version_info[:2]
envs = [dict(default_environment(), python_full_version=f"{minor}.{micro}") for micro in range(0, 40)]
kept = []
for block in re.split(r"\n(?=[A-Za-z0-9])", text):
    lines = block.splitlines()
    requirement, _, marker = lines[0].rstrip(" \\").partition(" ; ")
    hashes = [line.strip().rstrip(" \\") for line in lines[1:] if line.strip().startswith("--hash")]
    if "==" not in requirement or (marker and not any(Marker(marker).evaluate(env) for env in envs)):
        continue
    kept.append(" ".join([requirement.strip(), *hashes]))
open(sys.argv[2], "w").write("\n".join(kept) + "\n")
PY
"$python" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps --require-hashes \
    -r "$out/download.txt" -d "$out"
rm -f "$out"/chiffon-*.whl
uv build -q --wheel -o "$out" "$here"
# the python the wheels are for, which the playbook checks against each host's
"$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' > "$out/PYTHON_VERSION"
# shellcheck disable=SC2046  # one word per file name (wheel names have no spaces)
(cd "$out" && tar -cf wheelhouse.tar $(ls ./*.whl | sed 's|^\./||') requirements.txt PYTHON_VERSION)
echo "$out/wheelhouse.tar"
