"""Certificates: a local CA, the site's certificate and one per web/db host, made with `cryptography`.

Pure part, in memory: `wanted_certs` (which certificates a topology needs, with which names), `new_ca`,
`issue`, `still_good` (is a stored certificate still right for the current names and CA?).
I/O part: `ensure_pki` keeps <cluster>/pki/ (0700; keys 0600) up to date and reuses what is still good,
so a second `up` changes nothing; `check_tls_files` reads the user's own files named in [tls];
`ca_path` is what `webinfra ca` prints.

Keys are EC P-256. The CA is valid 10 years, leaf certificates about 2 years; a certificate that
expires within 30 days, lacks a current name or was not issued by the current CA is issued again.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webinfra.model import Role, Topology, TopologyError
from webinfra.state import Layout

CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
SITE = "site"

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertRequest:
    """One certificate a topology needs: its file stem under pki/ and the names it must carry."""

    stem: str
    common_name: str
    dns: tuple[str, ...]
    ips: tuple[str, ...]


def wanted_certs(topo: Topology) -> list[CertRequest]:
    """The site's certificate (unless the user brings one) and one per host that serves TLS behind the LB:
    nginx on web hosts (when the LB -> nginx hop is encrypted), MariaDB on DB hosts, etcd members (client
    and peer TLS; the same certificate is their client certificate towards the other members)."""
    if not topo.tls.enabled:
        return []
    out: list[CertRequest] = []
    if not topo.tls.user_cert:
        lbs = topo.with_role(Role.LB)
        ips = ([str(topo.vip)] if topo.vip is not None else []) + [str(topo.address_of(h.name)) for h in lbs]
        out.append(CertRequest(SITE, topo.site.name, (topo.site.name, *(h.name for h in lbs)), tuple(ips)))
    for host in topo.hosts:
        if (host.has(Role.WEB) and topo.backend_tls) or host.has(Role.DB) or host.has(Role.ETCD):
            out.append(CertRequest(host.name, host.name, (host.name,), (str(topo.address_of(host.name)),)))
    return out


# ---- pure: keys and certificates in memory ----


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "webinfra"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def new_ca(cluster: str, now: dt.datetime) -> tuple[Key, x509.Certificate]:
    key = new_key()
    name = _name(f"webinfra {cluster} local CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key: Key, ca_cert: x509.Certificate, req: CertRequest, now: dt.datetime) -> tuple[Key, x509.Certificate]:
    """A server certificate (also good as a TLS client certificate) for `req`'s names, signed by the CA."""
    key = new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in req.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in req.ips]
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(req.common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def names_of(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def still_good(
    cert: x509.Certificate, key: Key, ca_cert: x509.Certificate, req: CertRequest | None, now: dt.datetime
) -> bool:
    """Reuse `cert`? Issued by this CA, its key matches, valid beyond the renewal margin, all current names."""
    if cert.not_valid_after_utc - RENEW_BEFORE < now or cert.not_valid_before_utc > now:
        return False
    if _spki(cert.public_key()) != _spki(key.public_key()):
        return False
    if req is None:  # the CA itself
        return True
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    dns, ips = names_of(cert)
    return set(req.dns) <= dns and set(req.ips) <= ips


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ---- I/O: files under <cluster>/pki/ ----


def _write(path: Path, data: bytes, mode: int) -> bool:
    """Write atomically with `mode` (never briefly readable by others); True when the bytes changed."""
    if path.exists() and path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Key] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return (cert, key) if isinstance(key, ec.EllipticCurvePrivateKey) else None


def ensure_pki(topo: Topology, layout: Layout, now: dt.datetime | None = None) -> list[str]:
    """Make or reuse every certificate the topology needs; return the stems of those (re)written
    ("ca", "site", host names), so services that read them can be restarted. Idempotent."""
    if not topo.tls.enabled:
        return []
    now = now or dt.datetime.now(dt.UTC)
    check_tls_files(topo)
    pki = layout.pki
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki.chmod(0o700)
    changed: list[str] = []
    ca_key_path = pki / "ca.key"
    loaded = _load(layout.ca_cert, ca_key_path)
    if loaded is not None and still_good(loaded[0], loaded[1], loaded[0], None, now):
        ca_cert, ca_key = loaded
    else:
        ca_key, ca_cert = new_ca(topo.name, now)
        _write(ca_key_path, pem_key(ca_key), 0o600)
        _write(layout.ca_cert, pem_cert(ca_cert), 0o644)
        changed.append("ca")
    for req in wanted_certs(topo):
        cert_path, key_path = pki / f"{req.stem}.crt", pki / f"{req.stem}.key"
        current = _load(cert_path, key_path)
        if current is not None and still_good(current[0], current[1], ca_cert, req, now):
            cert, key = current
        else:
            key, cert = issue(ca_key, ca_cert, req, now)
            _write(key_path, pem_key(key), 0o600)
            _write(cert_path, pem_cert(cert), 0o644)
            changed.append(req.stem)
        if req.stem == SITE and _write(layout.site_pem, pem_cert(cert) + pem_key(key), 0o600) and SITE not in changed:
            changed.append(SITE)
    if topo.tls.user_cert:
        assert topo.tls.cert_file is not None and topo.tls.key_file is not None
        user = Path(topo.tls.cert_file).read_bytes().rstrip(b"\n") + b"\n" + Path(topo.tls.key_file).read_bytes()
        if _write(layout.site_pem, user, 0o600):
            changed.append(SITE)
    return changed


def check_tls_files(topo: Topology, source: str = "topology") -> None:
    """The user's own files named in [tls] can be read and fit together; else one TopologyError naming the field."""
    tls = topo.tls
    if not tls.enabled:
        return
    loaded: dict[str, bytes] = {}
    for field in ("cert_file", "key_file", "ca_file"):
        value = getattr(tls, field)
        if value is None:
            continue
        try:
            loaded[field] = Path(value).read_bytes()
        except FileNotFoundError:
            raise TopologyError(source, f"tls.{field}", value, "cannot read: file not found") from None
        except OSError as exc:
            raise TopologyError(source, f"tls.{field}", value, f"cannot read: {exc.strerror or exc}") from None
    certs: dict[str, Sequence[x509.Certificate]] = {}
    for field in ("cert_file", "ca_file"):
        if field in loaded:
            try:
                certs[field] = x509.load_pem_x509_certificates(loaded[field])
            except ValueError:
                raise TopologyError(source, f"tls.{field}", getattr(tls, field), "not a PEM certificate") from None
    if "key_file" in loaded:
        try:
            key = serialization.load_pem_private_key(loaded["key_file"], password=None)
        except (ValueError, TypeError):
            raise TopologyError(source, "tls.key_file", tls.key_file, "not an unencrypted PEM private key") from None
        if _spki(certs["cert_file"][0].public_key()) != _spki(key.public_key()):
            raise TopologyError(source, "tls.key_file", tls.key_file, "is not the key of tls.cert_file")


def ca_path(topo: Topology, layout: Layout) -> Path:
    """The CA a client must trust to verify the site: the user's `ca_file`, else webinfra's local CA."""
    return Path(topo.tls.ca_file) if topo.tls.ca_file else layout.ca_cert
