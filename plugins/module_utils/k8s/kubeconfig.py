# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The common kubeconfig, read without the kubernetes package: a start-up cost the modules can skip.

Importing ``kubernetes`` (which kubernetes.core's client factory needs) takes 0.5-1 s on a small
controller, about half of a no-op module run. Most runs connect with the simplest kubeconfig there is:
a server with its CA, and a bearer token or a client certificate (what kubeadm, the tenant module and
this collection's playbooks write). ``direct_settings`` reads exactly that and returns None for
everything else (exec and auth-provider plugins, token files, proxies, impersonation, any connection
option besides ``kubeconfig`` and ``context``), which then goes through kubernetes.core as before.

Pure logic: a kubeconfig (path or mapping) and the module's connection options in, plain settings out.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os

# Connection options (kubernetes.core's AUTH_ARG_SPEC) this reader understands; any other one set means
# kubernetes.core decides.
DIRECT_OPTIONS = frozenset(["kubeconfig", "context"])
CLUSTER_FIELDS = frozenset(
    ["server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify"]
)
USER_FIELDS = frozenset(["token", "client-certificate", "client-certificate-data", "client-key", "client-key-data"])


class Settings(dict):
    """host, verify (bool), ca_file / ca_data (PEM text), cert_file / key_file or cert_data / key_data
    (PEM text), token."""


def _named(items, name):
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


def _decoded(text):
    return base64.b64decode(text).decode("ascii")


def _path(value, base):
    return value if os.path.isabs(value) else os.path.join(base, value)


def direct_settings(params, load_yaml):
    """Settings for the kubeconfig in ``params``, or None when kubernetes.core must read it.

    ``load_yaml(text)`` parses YAML (the caller passes yaml.safe_load, so this module imports nothing).
    """
    for key, value in params.items():
        if key not in DIRECT_OPTIONS and value is not None:
            return None
    source = params.get("kubeconfig")
    base = os.getcwd()
    if isinstance(source, str):
        if os.pathsep in source or not os.path.isfile(source):
            return None  # a list of files to merge, or nothing to read: kubernetes.core says what is wrong
        base = os.path.dirname(os.path.abspath(source))
        with open(source) as handle:
            config = load_yaml(handle.read())
    elif isinstance(source, dict):
        config = source
    else:
        return None
    if not isinstance(config, dict):
        return None
    context = _named(config.get("contexts"), params.get("context") or config.get("current-context"))
    if context is None or not isinstance(context.get("context"), dict):
        return None
    ctx = context["context"]
    if set(ctx) - {"cluster", "user", "namespace"}:
        return None
    cluster = (_named(config.get("clusters"), ctx.get("cluster")) or {}).get("cluster")
    user = (_named(config.get("users"), ctx.get("user")) or {}).get("user")
    if not isinstance(cluster, dict) or not isinstance(user, dict):
        return None
    if set(cluster) - CLUSTER_FIELDS or set(user) - USER_FIELDS or not cluster.get("server"):
        return None
    settings = Settings(host=str(cluster["server"]).rstrip("/"), verify=not cluster.get("insecure-skip-tls-verify"))
    if not settings["host"].startswith("https://"):
        return None
    try:
        if cluster.get("certificate-authority-data"):
            settings["ca_data"] = _decoded(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            settings["ca_file"] = _path(cluster["certificate-authority"], base)
        for kind in ("certificate", "key"):
            if user.get("client-%s-data" % kind):
                settings["%s_data" % kind[:4]] = _decoded(user["client-%s-data" % kind])
            elif user.get("client-%s" % kind):
                settings["%s_file" % kind[:4]] = _path(user["client-%s" % kind], base)
    except (TypeError, ValueError):
        return None  # not base64: kubernetes.core reports it
    has_cert = ("cert_data" in settings or "cert_file" in settings, "key_data" in settings or "key_file" in settings)
    if has_cert[0] != has_cert[1]:
        return None
    if user.get("token"):
        settings["token"] = str(user["token"])
    elif not has_cert[0]:
        return None  # no credentials at all
    return settings
