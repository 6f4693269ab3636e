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


def test_pip_conf_keeps_the_hosts_settings_with_the_bound_ca_bundle():
    listing = (
        "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
        "global.index-url='https://pypi.example.internal/simple'\n"
        "install.trusted-host='pypi.example.internal'\n"
        ":env:.default-timeout='180'\n"
        ":env:.index-url='https://proxy.example.internal/simple'\n"
        ":env:.extra-index-url='https://a.example.internal/simple\\nhttps://b.example.internal/simple'\n"
        ":env:.find-links='/opt/wheels'\n"
    )
    assert ee.pip_conf(listing, "/run/ca.crt") == (
        "[global]\n"
        "cert = /run/ca.crt\n"
        "index-url = https://proxy.example.internal/simple\n"  # the environment wins, as in pip
        "default-timeout = 180\n"
        "extra-index-url = https://a.example.internal/simple\n"
        "    https://b.example.internal/simple\n"
        "[install]\n"
        "trusted-host = pypi.example.internal\n"
    )


def test_pip_conf_of_a_host_without_configuration():
    assert ee.pip_conf("", "/run/ca.crt") == "[global]\ncert = /run/ca.crt\n"


SANITY_OUTPUT = """\
Running sanity test "action-plugin-docs"
Running sanity test "compile" on Python 3.13
Running sanity test "pylint"
ERROR: Found 1 pylint issue(s) which need to be resolved:
ERROR: tests/unit/test_x.py:35:9: disallowed-name: Disallowed name "_"
Running sanity test "pslint"
WARNING: Skipping sanity test "pslint" on Python 3.13 because it could not be found.
Running sanity test "yamllint"
FATAL: The 2 sanity test(s) listed below (out of 5) failed. See error output above for details.
compile --python 3.13
pylint
FATAL: Command "/usr/bin/env ANSIBLE_TEST_CONTENT_ROOT=/tmp/x ansible-test sanity" returned exit status 1.
"""


def test_sanity_results_of_a_failed_run():
    assert ee.sanity_results(SANITY_OUTPUT) == {
        "passed": ["action-plugin-docs", "yamllint"],
        "failed": ["compile", "pylint"],
        "skipped": ["pslint"],
    }


def test_sanity_results_of_a_passed_run():
    output = 'Running sanity test "pylint"\nRunning sanity test "validate-modules"\n'
    assert ee.sanity_results(output) == {"passed": ["pylint", "validate-modules"], "failed": [], "skipped": []}
