"""tools/ee.py's reading of the Containerfile ansible-builder writes (no build here: `make ee` builds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import ee

CONTAINERFILE = """\
ARG EE_BASE_IMAGE="docker.io/library/debian:trixie-slim"
ARG PKGMGR="/usr/local/bin/apt-pkgmgr"

# Base build stage
FROM $EE_BASE_IMAGE AS base
USER root
ENV PIP_BREAK_SYSTEM_PACKAGES=1
ARG PKGMGR
COPY _build/scripts/ /output/scripts/
RUN $PKGMGR install python3 \\
    python3-pip

FROM base AS galaxy
COPY _build /build
WORKDIR /build

FROM base AS final
COPY --from=galaxy /usr/share/ansible /usr/share/ansible
LABEL ansible-execution-environment=true
USER 1000
ENTRYPOINT ["/opt/builder/bin/entrypoint", "dumb-init"]
CMD ["bash"]
"""


def test_stages_and_global_args():
    args, stages = ee.parse(CONTAINERFILE)
    assert args == {"EE_BASE_IMAGE": "docker.io/library/debian:trixie-slim", "PKGMGR": "/usr/local/bin/apt-pkgmgr"}
    assert [(s.name, s.parent) for s in stages] == [
        ("base", "docker.io/library/debian:trixie-slim"),
        ("galaxy", "base"),
        ("final", "base"),
    ]
    base = stages[0].instructions
    assert ("RUN", "$PKGMGR install python3      python3-pip") in base  # continuation joined, not substituted
    assert stages[2].instructions[-2:] == [
        ("ENTRYPOINT", '["/opt/builder/bin/entrypoint", "dumb-init"]'),
        ("CMD", '["bash"]'),
    ]


def test_substitution_and_forms():
    assert ee.substitute("$A/${B}/$C", {"A": "x", "B": "y"}) == "x/y/"
    assert ee.exec_form('["a", "b c"]') == ["a", "b c"]
    assert ee.exec_form("echo $HOME") == ["/bin/sh", "-c", "echo $HOME"]
    assert ee.Builder.env_pairs("A=1 B='two words'") == [("A", "1"), ("B", "two words")]
    assert ee.Builder.env_pairs("A legacy value") == [("A", "legacy value")]
    opts, srcs, dest = ee.Builder.copy_args("--from=galaxy /usr/share/ansible /usr/share/ansible", {})
    assert (opts, srcs, dest) == ({"from": "galaxy"}, ["/usr/share/ansible"], "/usr/share/ansible")


def test_only_debian_base_images_are_built_here():
    with pytest.raises(ee.EEError, match="only Debian base images"):
        ee.base_rootfs("registry.access.redhat.com/ubi9/ubi-minimal")


def test_stage_key_follows_what_a_stage_copies(tmp_path: Path):
    (tmp_path / "_build").mkdir()
    (tmp_path / "_build" / "tarball").write_text("one")
    stages = ee.parse(CONTAINERFILE)[1]
    builder = ee.Builder(tmp_path, {}, tmp_path / "log")
    first = builder.stage_key(stages[1], "parent", {})
    assert builder.stage_key(stages[1], "parent", {}) == first
    (tmp_path / "_build" / "tarball").write_text("two")
    assert builder.stage_key(stages[1], "parent", {}) != first
    assert builder.stage_key(stages[1], "other parent", {}) != builder.stage_key(stages[1], "parent", {})
