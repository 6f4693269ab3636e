# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubeadm certificates: when each expires, which are due, what a renewal must restart.

Pure logic (no AnsibleModule, no I/O, standard library only): playbooks/certificates.yml gathers
`kubeadm certs check-expiration -o json`, the certificate part of the kubelet's client certificate file
and the kubelet's rotateCertificates setting on the hosts, and the filters in plugins/filter/certificates.py
call these functions on the controller. The renewal timer's script on the control planes (role
certificates, templates/anvil-cert-renew.py.j2) carries this file verbatim, so the unattended renewal
decides exactly as the playbook does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import json
import re
from datetime import datetime, timedelta, timezone

# Who reads each certificate kubeadm renews, and how a renewed file reaches it.
#   restart: read once, when the component starts (controller-manager.conf and scheduler.conf embed their
#     client certificate): the static pod is restarted.
#   reload: read again by the component itself for new connections, so no restart is needed. etcd loads
#     its serving, peer and client certificates from the files at every TLS handshake
#     (go.etcd.io/etcd/client/pkg/v3/transport, TLSInfo: GetCertificate and GetClientCertificate call
#     tlsutil.NewCert), which also covers the API server's client to etcd; the API server watches its
#     serving and front-proxy client files (k8s.io/apiserver dynamiccertificates
#     .NewDynamicServingContentFromFiles) and reads its kubelet client files for new connections (client-go
#     transport, ReloadTLSFiles). Connections open before the renewal keep the old certificate until they
#     reconnect, which is sound: TLS checks a certificate's validity only at the handshake. The certificates a
#     server presents (SERVED) are checked on the wire after a renewal, and a server still presenting the old
#     one is restarted. The etcd healthcheck client is only used by probes; admin.conf and super-admin.conf by
#     people and playbooks, on each use.
READERS = {
    "apiserver": ("kube-apiserver", "reload"),
    "apiserver-kubelet-client": ("kube-apiserver", "reload"),
    "apiserver-etcd-client": ("kube-apiserver", "reload"),
    "front-proxy-client": ("kube-apiserver", "reload"),
    "etcd-server": ("etcd", "reload"),
    "etcd-peer": ("etcd", "reload"),
    "etcd-healthcheck-client": (None, "reload"),
    "controller-manager.conf": ("kube-controller-manager", "restart"),
    "scheduler.conf": ("kube-scheduler", "restart"),
    "admin.conf": (None, "reload"),
    "super-admin.conf": (None, "reload"),
}
# The certificates a server presents to new connections (etcd's client and peer ports, the API server).
SERVED = ("etcd-server", "etcd-peer", "apiserver")
# Restart order on one node: etcd first (the API server's backend), then the API server, then its clients.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBELET_CLIENT = "kubelet-client"
DAY = 86400.0

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_OID_COMMON_NAME = b"\x55\x04\x03"


class CertificateError(ValueError):
    """Input that is not what kubeadm or a PEM file gives (reported to the user as is)."""


# ---------------------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------------------


def parse_time(value):
    """An RFC 3339 time (kubeadm's expirationDate, or a datetime) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    match = _ISO.match(str(value or "").strip())
    if not match:
        raise CertificateError("not an RFC 3339 time: %r" % (value,))
    parts = [int(p) for p in match.groups()[:6]]
    when = datetime(*parts, tzinfo=timezone.utc)
    zone = match.group(7)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        when -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return when


def iso(when):
    """UTC time as 2026-12-01T17:50:00Z."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(now):
    return parse_time(now) if now is not None else datetime.now(timezone.utc)


# ---------------------------------------------------------------------------------------------------------
# X.509 validity from PEM (a minimal DER walk: no cryptography library on hosts or in the timer script)
# ---------------------------------------------------------------------------------------------------------


def _der(data, pos):
    """(tag, content start, content end) of the DER element at pos."""
    if pos + 2 > len(data):
        raise CertificateError("truncated DER element")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise CertificateError("unsupported DER length")
        length = int(binascii.hexlify(bytes(data[pos : pos + count])), 16)
        pos += count
    if pos + length > len(data):
        raise CertificateError("truncated DER element")
    return tag, pos, pos + length


def _children(data, start, end):
    out = []
    while start < end:
        tag, cstart, cend = _der(data, start)
        out.append((tag, cstart, cend))
        start = cend
    return out


def _der_time(tag, raw):
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ (RFC 5280: years 50-99 are 19xx)
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise CertificateError("validity is not a time (tag 0x%02x)" % tag)
    if not text.endswith("Z") or len(text) != 15:
        raise CertificateError("unsupported certificate time %r" % text)
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def _common_name(data, start, end):
    for _set_tag, set_start, set_end in _children(data, start, end):
        for _seq_tag, seq_start, seq_end in _children(data, set_start, set_end):
            parts = _children(data, seq_start, seq_end)
            if len(parts) == 2 and bytes(data[parts[0][1] : parts[0][2]]) == _OID_COMMON_NAME:
                return bytes(data[parts[1][1] : parts[1][2]]).decode("utf-8", "replace")
    return ""


def pem_der(pem):
    """The DER bytes of the first certificate in `pem`."""
    match = _PEM.search(pem or "")
    if not match:
        raise CertificateError("no PEM certificate found")
    try:
        return base64.b64decode(re.sub(r"\s+", "", match.group(1)), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateError("the PEM certificate is not base64: %s" % exc) from None


def pem_validity(pem):
    """{not_before, not_after (aware datetimes), subject (common name)} of the first certificate in `pem`.

    `pem` may hold other blocks (the kubelet's rotated file holds its key too; pass only the certificate
    part where you can, as playbooks/certificates.yml does)."""
    data = bytearray(pem_der(pem))
    _tag, start, _end = _der(data, 0)  # Certificate
    _tbs_tag, tbs_start, tbs_end = _der(data, start)  # TBSCertificate
    fields = _children(data, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[3][0] != 0x30:
        raise CertificateError("not an X.509 certificate")
    times = _children(data, fields[3][1], fields[3][2])
    if len(times) != 2:
        raise CertificateError("certificate validity has %d times" % len(times))
    not_before, not_after = (_der_time(t, bytes(data[s:e])) for t, s, e in times)
    return {
        "not_before": not_before,
        "not_after": not_after,
        "subject": _common_name(data, fields[4][1], fields[4][2]),
    }


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------


def parse_check_expiration(output):
    """kubeadm's CertificateExpirationInfo (`kubeadm certs check-expiration -o json`), as text or data.

    Text may carry lines before the JSON object (kubeadm prints "[check-expiration] Reading configuration
    from the cluster..." when it runs without --config). Returns (certificates, authorities), lists of
    kubeadm's entries (name, expirationDate, residualTime, externallyManaged, missing, ...)."""
    data = output
    if not isinstance(output, dict):
        text = output or ""
        if "{" not in text:
            raise CertificateError("kubeadm certs check-expiration gave no JSON: %r" % text[:200])
        try:
            data = json.loads(text[text.index("{") :])
        except ValueError as exc:
            raise CertificateError("kubeadm certs check-expiration gave unreadable JSON: %s" % exc) from None
    if data.get("kind") != "CertificateExpirationInfo":
        raise CertificateError("not a kubeadm CertificateExpirationInfo: kind %r" % data.get("kind"))
    return list(data.get("certificates") or []), list(data.get("certificateAuthorities") or [])


def entry(name, kind, expires, now, threshold_days, **extra):
    """One line of the report: name, kind, expires (ISO), days_left, below_threshold, plus extra keys."""
    left = (expires - now).total_seconds() / DAY
    item = {
        "name": name,
        "kind": kind,
        "expires": iso(expires),
        "days_left": round(left, 2),
        "below_threshold": left < float(threshold_days),
    }
    item.update(extra)
    return item


def kubeadm_entries(output, threshold_days, now=None):
    """The report's entries for every certificate and CA `kubeadm certs check-expiration` lists."""
    moment = _now(now)
    certs, cas = parse_check_expiration(output)
    out = []
    for kind, items in (("certificate", certs), ("ca", cas)):
        for item in items:
            missing = bool(item.get("missing"))
            external = bool(item.get("externallyManaged"))
            extra = {
                "externally_managed": external,
                "missing": missing,
                # kubeadm renews its own leaf certificates, never a CA nor what someone else manages.
                "renewable": kind == "certificate" and not external and not missing,
            }
            if kind == "certificate":
                extra["authority"] = item.get("caName", "")
            if missing or not item.get("expirationDate"):
                out.append(
                    dict(
                        {"name": item.get("name", ""), "kind": kind, "expires": None, "days_left": None},
                        below_threshold=True,
                        **extra,
                    )
                )
                continue
            out.append(
                entry(item.get("name", ""), kind, parse_time(item["expirationDate"]), moment, threshold_days, **extra)
            )
    return out


def kubelet_entry(pem, rotation, threshold_days, now=None):
    """The report's entry for the kubelet's client certificate, from its PEM certificate part."""
    validity = pem_validity(pem)
    return entry(
        KUBELET_CLIENT,
        "kubelet",
        validity["not_after"],
        _now(now),
        threshold_days,
        subject=validity["subject"],
        rotation=rotation,
        renewable=False,
    )


def rotation_enabled(kubelet_config):
    """The kubelet's rotateCertificates, from its configuration (a dict, or YAML text read by a regex:
    the timer's script has no YAML parser). kubeadm writes `rotateCertificates: true`; unset means off."""
    if isinstance(kubelet_config, dict):
        return bool(kubelet_config.get("rotateCertificates", False))
    match = re.search(r"^rotateCertificates:\s*(\S+)", kubelet_config or "", re.M)
    return bool(match) and match.group(1).strip("'\"").lower() == "true"


def report(host, entries, threshold_days, force=False, reload=True):
    """The host's report: every entry, what is due and what to do about it.

    renew: kubeadm's renewable certificates below the threshold (every renewable one with `force`).
    restart: the static pods to restart after renewing them (see restarts(); `reload` as there).
    verify: the renewed certificates whose server is checked on the wire instead of restarted.
    problems: what renewal cannot fix and a person must (a CA below the threshold, a missing certificate,
    a kubelet client certificate below the threshold without rotation, or with rotation that did not happen).
    """
    entries = list(entries)
    due = [e for e in entries if e["below_threshold"]]
    renew = [e["name"] for e in entries if e.get("renewable") and (force or e["below_threshold"])]
    problems = []
    for item in due:
        when = "expired" if item["days_left"] is not None and item["days_left"] <= 0 else "below the threshold"
        if item["kind"] == "ca":
            problems.append(
                "%s: CA %s expires %s (%s days): kubeadm cannot renew a CA; rotate it (docs/certificates.md)"
                % (host, item["name"], item["expires"], item["days_left"])
            )
        elif item["kind"] == "kubelet":
            problems.append(
                "%s: kubelet client certificate %s (%s, %s days); %s"
                % (
                    host,
                    when,
                    item["expires"],
                    item["days_left"],
                    "rotation is on but has not happened: check the kubelet's log and pending CSRs"
                    if item.get("rotation")
                    else "rotateCertificates is off in the kubelet configuration: turn it on",
                )
            )
        elif not item.get("renewable"):
            problems.append(
                "%s: %s is %s and not renewable by kubeadm (%s)"
                % (host, item["name"], when, "missing" if item.get("missing") else "externally managed")
            )
    kubelet = [e for e in entries if e["kind"] == "kubelet"]
    return {
        "host": host,
        "threshold_days": threshold_days,
        "certificates": entries,
        "below_threshold": [e["name"] for e in due],
        "renew": renew,
        "restart": restarts(renew, reload),
        "verify": served(renew, reload),
        "problems": problems,
        "kubelet_rotation": kubelet[0].get("rotation") if kubelet else None,
        "summary": summary(host, entries, threshold_days),
    }


def summary(host, entries, threshold_days):
    """One line per host: the soonest expiry, what is below the threshold, kubelet rotation."""
    threshold_days = "%g" % float(threshold_days)
    dated = sorted((e for e in entries if e["days_left"] is not None), key=lambda e: e["days_left"])
    due = [e for e in entries if e["below_threshold"]]
    parts = ["%s: %d checked" % (host, len(entries))]
    if dated:
        parts.append("soonest %s %s (%.1f d)" % (dated[0]["name"], dated[0]["expires"], dated[0]["days_left"]))
    if due:
        parts.append(
            "below %s d: %s"
            % (
                threshold_days,
                ", ".join(
                    "%s (%s d)" % (e["name"], "missing" if e["days_left"] is None else e["days_left"]) for e in due
                ),
            )
        )
    else:
        parts.append("none below %s d" % threshold_days)
    kubelet = [e for e in entries if e["kind"] == "kubelet"]
    if kubelet:
        parts.append("kubelet rotation %s" % ("on" if kubelet[0].get("rotation") else "OFF"))
    return "; ".join(parts)


def restarts(renewed, reload=True, stale=()):
    """The control-plane static pods to restart after renewing `renewed`, in restart order.

    With `reload`, only the components that read a renewed file once at start, plus the servers of the
    `stale` certificates (SERVED names a server still presented the old certificate of after the renewal);
    without, every component that reads a renewed file. An unknown certificate name restarts all of them."""
    wanted = set()
    for name in renewed:
        if name not in READERS:
            wanted.update(COMPONENTS)
            continue
        component, how = READERS[name]
        if component and (how == "restart" or not reload):
            wanted.add(component)
    for name in stale:
        if name not in SERVED:
            raise CertificateError("%r is not a certificate a server presents (%s)" % (name, ", ".join(SERVED)))
        wanted.add(READERS[name][0])
    return [c for c in COMPONENTS if c in wanted]


def served(renewed, reload=True):
    """The renewed certificates whose server is checked on the wire (it reloads them instead of restarting)."""
    return [name for name in SERVED if reload and name in renewed]


def host_report(
    host,
    threshold_days,
    kubeadm_output=None,
    *,
    kubelet_pem=None,
    kubelet_config=None,
    force=False,
    reload=True,
    now=None,
):
    """Everything for one host: kubeadm's certificates (control planes) and the kubelet client certificate."""
    try:
        threshold = float(threshold_days)
    except (TypeError, ValueError):
        raise CertificateError("the threshold must be a number of days, not %r" % (threshold_days,)) from None
    if threshold < 0:
        raise CertificateError("the threshold must not be negative: %r" % (threshold_days,))
    entries = []
    if kubeadm_output:
        entries.extend(kubeadm_entries(kubeadm_output, threshold, now))
    if kubelet_pem:
        entries.append(kubelet_entry(kubelet_pem, rotation_enabled(kubelet_config), threshold, now))
    return report(host, entries, threshold_days, force=force, reload=reload)


def stale_containers(crictl_ps, since):
    """IDs of the running containers in `crictl ps -o json` output (text or data) created before `since`
    (seconds since the epoch, the node's clock): those still run with the files as they were before a
    renewal. A container created since (the kubelet restarted it already, say a controller manager that lost
    its leader lease while the API server restarted) has read the renewed files: restarting it again would
    only push the kubelet's restart back-off up."""
    data = crictl_ps
    if not isinstance(crictl_ps, dict):
        try:
            data = json.loads(crictl_ps or "{}")
        except ValueError as exc:
            raise CertificateError("crictl ps gave unreadable JSON: %s" % exc) from None
    limit = int(float(since) * 1e9)
    return [
        c["id"]
        for c in data.get("containers") or []
        if c.get("state", "CONTAINER_RUNNING") == "CONTAINER_RUNNING" and int(c.get("createdAt") or 0) < limit
    ]
