"""Fixtures shared by every test: a Docker sandbox on the real daemon (or a clean skip), the bundled example's config."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def docker_sandbox():
    """The Docker sandbox on the real daemon, or a skip saying why Docker is unusable here."""
    from autofix.sandbox import SandboxUnavailable
    from autofix.sandbox.docker_backend import DockerSandbox
    from autofix.sandbox.image import BASE_IMAGE, _image_id

    try:
        sandbox = DockerSandbox(start_daemon=False)
    except SandboxUnavailable as exc:
        pytest.skip(f"Docker is unusable here: {exc}")
    if _image_id(sandbox.client, BASE_IMAGE) is None:
        pytest.skip(f"the sandbox base image {BASE_IMAGE} is missing: run sandboxes/base/build.sh")
    logging.getLogger("autofix.sandbox").info("sandbox network gateway: %s", sandbox.gateway_bind_host())
    return sandbox


@pytest.fixture(scope="session")
def helpdesk():
    """The bundled helpdesk example's configuration, as loaded from its autofix.yaml."""
    from autofix.config import load_config
    from autofix.demo import bundled_example

    return load_config(bundled_example())
