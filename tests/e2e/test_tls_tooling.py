"""`keyraft tls ca create` and `keyraft tls cert create`, run for real in a
temp directory and checked with third-party tools: the `openssl` CLI
(verify, x509 -text, ec -check, and an s_server/s_client handshake with
mutual authentication) and python3-cryptography."""
import datetime
import hashlib
import ipaddress
import os
import re
import stat
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import BIN, SLOW, check_output_clean

OK, ERROR, USAGE = 0, 1, 2
CA = "keyraft-agent-ca.pem"
CA_KEY = "keyraft-agent-ca-key.pem"


def kr(cwd, *args, rc=OK):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEYRAFT_")}
    r = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, env=env,
                       timeout=30 * SLOW)
    check_output_clean(r.stderr)
    assert r.returncode == rc, (args, r.returncode, r.stdout, r.stderr)
    return r


def openssl(cwd, *args, check=True, input=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True,
                       input=input, timeout=30)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def dns_sans(cert):
    return ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def ip_sans(cert):
    return [str(i) for i in ext(cert, x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.IPAddress)]


def spki_sha256(cert):
    return hashlib.sha256(cert.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo)).digest()


def assert_signed_by(cert, ca):
    pub = ca.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(pub, rsa.RSAPublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes,
                   padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        pub.verify(cert.signature, cert.tbs_certificate_bytes)


def validity_days(cert):
    d = cert.not_valid_after - cert.not_valid_before
    assert d.seconds == 0 and d.microseconds == 0, d
    return d.days


def assert_fresh(cert):
    now = datetime.datetime.utcnow()
    assert now - datetime.timedelta(minutes=5) <= cert.not_valid_before <= now


def assert_private_p256(path):
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        assert f.read().startswith("-----BEGIN EC PRIVATE KEY-----")
    r = openssl(os.path.dirname(path), "ec", "-check", "-noout", "-in", path)
    assert "EC Key valid." in (r.stdout + r.stderr).decode()
    key = load_key(path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    return key


@pytest.fixture
def d(tmp_path):
    """A working directory holding a fresh default CA."""
    r = kr(tmp_path, "tls", "ca", "create")
    assert r.stdout.decode() == (
        f"==> CA certificate saved to: {CA}\n"
        f"==> CA certificate key saved to: {CA_KEY}\n")
    return tmp_path


# ---- tls ca create ----

def test_ca_defaults(d):
    ca = load_cert(d / CA)
    key = assert_private_p256(str(d / CA_KEY))
    assert key.public_key().public_numbers() == \
        ca.public_key().public_numbers()
    assert_signed_by(ca, ca)
    assert ca.issuer == ca.subject
    assert ca.version == x509.Version.v3
    assert 0 < ca.serial_number < 2 ** 128

    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert ku.value.digital_signature
    assert not ku.value.key_encipherment
    ski = ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert ski == spki_sha256(ca)
    assert ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ski
    with pytest.raises(x509.ExtensionNotFound):
        ext(ca, x509.NameConstraints)

    def attr(oid):
        return [a.value for a in ca.subject.get_attributes_for_oid(oid)]
    assert attr(NameOID.COMMON_NAME) == [
        f"Keyraft Agent CA {ca.serial_number}"]
    assert attr(NameOID.COUNTRY_NAME) == ["US"]
    assert attr(NameOID.ORGANIZATION_NAME) == ["Keyraft"]
    assert attr(NameOID.ORGANIZATIONAL_UNIT_NAME) == ["Keyraft"]
    assert attr(NameOID.LOCALITY_NAME) == ["San Francisco"]
    assert attr(NameOID.STATE_OR_PROVINCE_NAME) == ["CA"]
    assert attr(NameOID.STREET_ADDRESS) == ["101 Second Street"]
    assert attr(NameOID.POSTAL_CODE) == ["94105"]
    assert validity_days(ca) == 1825
    assert_fresh(ca)
    assert stat.S_IMODE(os.stat(d / CA).st_mode) == 0o644

    text = openssl(d, "x509", "-in", CA, "-noout", "-text").stdout.decode()
    assert re.search(r"Basic Constraints: critical\s+CA:TRUE", text)
    assert re.search(r"Key Usage: critical\s+Digital Signature, "
                     r"Certificate Sign, CRL Sign", text)
    assert "ASN1 OID: prime256v1" in text
    assert "ecdsa-with-SHA256" in text
    # Only the two files: no temporaries left behind.
    assert sorted(os.listdir(d)) == [CA_KEY, CA]


def test_ca_custom_subject_days_and_constraints(tmp_path):
    kr(tmp_path, "tls", "ca", "create", "-common-name", "Test CA",
       "-country", "DE", "-organization", "Example", "-street-address", "",
       "-days", "30", "-domain", "example", "-name-constraint",
       "-additional-domain", "example.com", "-additional-domain=corp.test")
    assert sorted(os.listdir(tmp_path)) == ["example-agent-ca-key.pem",
                                            "example-agent-ca.pem"]
    ca = load_cert(tmp_path / "example-agent-ca.pem")
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == f"Test CA {ca.serial_number}"
    assert ca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0] \
        .value == "DE"
    assert not ca.subject.get_attributes_for_oid(NameOID.STREET_ADDRESS)
    assert validity_days(ca) == 30
    nc = ext(ca, x509.NameConstraints)
    assert nc.critical
    assert [n.value for n in nc.value.permitted_subtrees] == [
        "example", "localhost", "keyraft", "example.com", "corp.test"]
    assert nc.value.excluded_subtrees is None


def test_ca_refuses_to_overwrite(d):
    before = (d / CA).read_bytes(), (d / CA_KEY).read_bytes()
    r = kr(d, "tls", "ca", "create", rc=ERROR)
    assert f"CA certificate file '{CA}' already exists" in r.stderr.decode()
    os.unlink(d / CA)
    r = kr(d, "tls", "ca", "create", rc=ERROR)
    assert f"CA key file '{CA_KEY}' already exists" in r.stderr.decode()
    assert not (d / CA).exists()
    assert (d / CA_KEY).read_bytes() == before[1]


def test_ca_flag_rules(tmp_path):
    r = kr(tmp_path, "tls", "ca", "create", "-domain", "foo", rc=USAGE)
    assert "-name-constraint" in r.stderr.decode()
    kr(tmp_path, "tls", "ca", "create", "-additional-domain", "x.com",
       rc=USAGE)
    kr(tmp_path, "tls", "ca", "create", "-days", "0", rc=USAGE)
    kr(tmp_path, "tls", "ca", "create", "-country", "USA", rc=ERROR)
    kr(tmp_path, "tls", "ca", "create", "-name-constraint", "-domain",
       "../etc", rc=USAGE)
    kr(tmp_path, "tls", "ca", "create", "extra-arg", rc=USAGE)
    assert os.listdir(tmp_path) == []
    r = kr(tmp_path, "tls", "ca", "create", "-h")
    assert "-name-constraint" in r.stdout.decode()


# ---- tls cert create ----

def check_leaf(d, role, cert_file, key_file, dns, ips, days=365,
               ca_file=CA):
    ca = load_cert(d / ca_file)
    cert = load_cert(d / cert_file)
    key = assert_private_p256(str(d / key_file))
    assert key.public_key().public_numbers() == \
        cert.public_key().public_numbers()
    assert_signed_by(cert, ca)
    assert cert.issuer == ca.subject
    assert 0 < cert.serial_number < 2 ** 128
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == dns[0]
    assert cn.startswith(role + ".")
    assert sorted(dns_sans(cert)) == sorted(dns)
    assert sorted(ip_sans(cert)) == sorted(
        str(ipaddress.ip_address(i)) for i in ips)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert ku.value.key_encipherment and not ku.value.key_cert_sign
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH,
                        ExtendedKeyUsageOID.CLIENT_AUTH}
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest == \
        spki_sha256(cert)
    try:
        ca_ski = ext(ca, x509.SubjectKeyIdentifier).value.digest
        assert ext(cert, x509.AuthorityKeyIdentifier).value \
            .key_identifier == ca_ski
    except x509.ExtensionNotFound:
        pass
    assert validity_days(cert) == days
    assert_fresh(cert)

    r = openssl(d, "verify", "-CAfile", ca_file, cert_file)
    assert r.stdout.decode().strip() == f"{cert_file}: OK"
    for name in dns:
        openssl(d, "verify", "-CAfile", ca_file, "-verify_hostname", name,
                cert_file)
    for ip in ips:
        openssl(d, "verify", "-CAfile", ca_file, "-verify_ip", ip,
                cert_file)
    r = openssl(d, "verify", "-CAfile", ca_file, "-verify_hostname",
                "not-a-name.example", cert_file, check=False)
    assert r.returncode != 0
    text = openssl(d, "x509", "-in", cert_file, "-noout",
                   "-text").stdout.decode()
    assert re.search(r"Extended Key Usage:\s+TLS Web Server "
                     r"Authentication, TLS Web Client Authentication", text)
    for name in dns:
        assert f"DNS:{name}" in text
    shown = re.findall(r"IP Address:([0-9A-Fa-f:.]+)", text)
    assert sorted(str(ipaddress.ip_address(i)) for i in shown) == \
        sorted(str(ipaddress.ip_address(i)) for i in ips)
    assert re.search(r"Basic Constraints: critical\s+CA:FALSE", text)
    return cert


def test_server_cert(d):
    r = kr(d, "tls", "cert", "create", "-server")
    assert r.stdout.decode() == (
        f"==> Using CA file {CA} and CA key {CA_KEY}\n"
        "==> Server Certificate saved to global-server-keyraft.pem\n"
        "==> Server Certificate key saved to "
        "global-server-keyraft-key.pem\n")
    assert "WARNING: Server Certificates grants authority" in \
        r.stderr.decode()
    check_leaf(d, "server", "global-server-keyraft.pem",
               "global-server-keyraft-key.pem",
               ["server.global.keyraft", "localhost"], ["127.0.0.1"])
    assert stat.S_IMODE(
        os.stat(d / "global-server-keyraft.pem").st_mode) == 0o644


def test_client_and_cli_certs(d):
    r = kr(d, "tls", "cert", "create", "-client")
    assert "==> Client Certificate saved to global-client-keyraft.pem" in \
        r.stdout.decode()
    assert "WARNING" not in r.stderr.decode()
    check_leaf(d, "client", "global-client-keyraft.pem",
               "global-client-keyraft-key.pem",
               ["client.global.keyraft", "localhost"], ["127.0.0.1"])
    r = kr(d, "tls", "cert", "create", "-cli")
    assert "==> Cli Certificate saved to global-cli-keyraft.pem" in \
        r.stdout.decode()
    assert "==> CLI Certificate key saved to global-cli-keyraft-key.pem" in \
        r.stdout.decode()
    check_leaf(d, "cli", "global-cli-keyraft.pem",
               "global-cli-keyraft-key.pem",
               ["cli.global.keyraft", "localhost"], [])


def test_additional_names_region_and_days(d):
    kr(d, "tls", "cert", "create", "-server", "-region", "eu-west",
       "-days", "30", "-additional-dnsname", "node1.example.com",
       "-additional-dnsname= spaced.example.com ",
       "-additional-ipaddress", "10.0.0.7",
       "-additional-ipaddress=fd00::1", "-node", "n1")
    check_leaf(d, "server", "eu-west-server-keyraft.pem",
               "eu-west-server-keyraft-key.pem",
               ["server.eu-west.keyraft", "node1.example.com",
                "spaced.example.com", "n1.server.eu-west.keyraft",
                "server.global.keyraft", "localhost"],
               ["10.0.0.7", "fd00::1", "127.0.0.1"], days=30)


def test_region_from_environment(d):
    env = dict(os.environ, KEYRAFT_REGION="ap")
    r = subprocess.run([BIN, "tls", "cert", "create", "-client"], cwd=d,
                       env=env, capture_output=True, timeout=30 * SLOW)
    check_output_clean(r.stderr)
    assert r.returncode == 0, r.stderr
    assert (d / "ap-client-keyraft.pem").exists()
    # -cluster-region (deprecated) beats -region.
    kr(d, "tls", "cert", "create", "-client", "-region", "x",
       "-cluster-region", "y")
    assert (d / "y-client-keyraft.pem").exists()


def test_custom_domain_under_name_constraints(tmp_path):
    kr(tmp_path, "tls", "ca", "create", "-domain", "corp", "-name-constraint")
    kr(tmp_path, "tls", "cert", "create", "-server", "-domain", "corp")
    check_leaf(tmp_path, "server", "global-server-corp.pem",
               "global-server-corp-key.pem",
               ["server.global.corp", "server.global.keyraft", "localhost"],
               ["127.0.0.1"], ca_file="corp-agent-ca.pem")
    # A name outside the CA's constraints is refused before any file is
    # written.
    r = kr(tmp_path, "tls", "cert", "create", "-client", "-domain", "corp",
           "-additional-dnsname", "evil.example.org", rc=ERROR)
    assert "does not verify against the CA" in r.stderr.decode()
    assert not (tmp_path / "global-client-corp.pem").exists()
    assert not (tmp_path / "global-client-corp-key.pem").exists()


def test_cert_refuses_to_overwrite(d):
    kr(d, "tls", "cert", "create", "-server")
    before = (d / "global-server-keyraft.pem").read_bytes()
    r = kr(d, "tls", "cert", "create", "-server", rc=ERROR)
    assert "Certificate file 'global-server-keyraft.pem' already exists" in \
        r.stderr.decode()
    assert (d / "global-server-keyraft.pem").read_bytes() == before
    os.unlink(d / "global-server-keyraft.pem")
    r = kr(d, "tls", "cert", "create", "-server", rc=ERROR)
    assert "Key file 'global-server-keyraft-key.pem' already exists" in \
        r.stderr.decode()
    assert not (d / "global-server-keyraft.pem").exists()


def test_cert_errors(d):
    kr(d, "tls", "cert", "create", rc=USAGE)
    kr(d, "tls", "cert", "create", "-server", "-cli", rc=USAGE)
    kr(d, "tls", "cert", "create", "-client", "-node", "n", rc=USAGE)
    kr(d, "tls", "cert", "create", "-cli", "-additional-ipaddress", "1.2.3",
       rc=USAGE)
    kr(d, "tls", "cert", "create", "-cli", "-region", "a/b", rc=USAGE)
    r = kr(d, "tls", "cert", "create", "-cli", "-ca", "missing.pem",
           rc=ERROR)
    assert "missing.pem" in r.stderr.decode()
    # A CA certificate with some other CA's key.
    other = d / "other"
    other.mkdir()
    kr(other, "tls", "ca", "create")
    r = kr(d, "tls", "cert", "create", "-cli", "-key",
           str(other / CA_KEY), rc=ERROR)
    assert "does not match" in r.stderr.decode()
    assert sorted(os.listdir(d)) == [CA_KEY, CA, "other"]


def test_serials_are_random_and_unique(tmp_path):
    serials = set()
    for i in range(3):
        sub = tmp_path / str(i)
        sub.mkdir()
        kr(sub, "tls", "ca", "create")
        serials.add(load_cert(sub / CA).serial_number)
        for region in ("a", "b", "c"):
            kr(sub, "tls", "cert", "create", "-client", "-region", region)
            serials.add(load_cert(
                sub / f"{region}-client-keyraft.pem").serial_number)
    assert len(serials) == 12
    assert max(s.bit_length() for s in serials) > 120


@pytest.mark.parametrize("keyspec", [
    ["-newkey", "rsa:2048"],
    ["-newkey", "ed25519"],
    ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
])
def test_signs_with_a_ca_made_elsewhere(tmp_path, keyspec):
    """A CA from `openssl req` (PKCS#8 key, RSA, Ed25519 or P-384) works
    as -ca/-key, like Nomad's ParseSigner."""
    openssl(tmp_path, "req", "-x509", *keyspec, "-nodes", "-days", "10",
            "-subj", "/CN=Foreign CA", "-keyout", "ca-key.pem",
            "-out", "ca.pem", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign")
    kr(tmp_path, "tls", "cert", "create", "-server", "-ca", "ca.pem",
       "-key", "ca-key.pem")
    check_leaf(tmp_path, "server", "global-server-keyraft.pem",
               "global-server-keyraft-key.pem",
               ["server.global.keyraft", "localhost"], ["127.0.0.1"],
               ca_file="ca.pem")


def test_command_listing(tmp_path):
    assert "tls" in kr(tmp_path, "-h").stdout.decode()
    out = kr(tmp_path, "tls", "-h").stdout.decode()
    assert re.search(r"^\s+ca\s", out, re.M)
    assert re.search(r"^\s+cert\s", out, re.M)
    assert "create" in kr(tmp_path, "tls", "ca", "-h").stdout.decode()
    assert "create" in kr(tmp_path, "tls", "cert", "-h").stdout.decode()


# ---- a real handshake with mutual authentication ----

class SServer:
    """`openssl s_server` on an ephemeral 127.0.0.1 port, requiring a
    client certificate from the CA and answering one connection (-www
    prints the client certificate it saw)."""

    def __init__(self, cwd, cert, key, ca):
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0",
             "-cert", cert, "-key", key, "-CAfile", ca,
             "-Verify", "1", "-verify_return_error", "-www",
             "-naccept", "1"],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.port = None
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            m = re.match(r"ACCEPT 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
            if not line and self.proc.poll() is not None:
                break
        assert self.port, self.proc.stderr.read()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 9)
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def s_client(cwd, port, *args):
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
         "-verify_return_error", "-ign_eof", *args],
        cwd=cwd, input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True,
        timeout=30)


@pytest.fixture
def pki(d):
    kr(d, "tls", "cert", "create", "-server")
    kr(d, "tls", "cert", "create", "-cli")
    kr(d, "tls", "cert", "create", "-client")
    return d


@pytest.mark.parametrize("role", ["cli", "client"])
def test_mutual_tls_handshake(pki, role):
    srv = SServer(pki, "global-server-keyraft.pem",
                  "global-server-keyraft-key.pem", CA)
    try:
        r = s_client(pki, srv.port, "-CAfile", CA,
                     "-verify_hostname", "server.global.keyraft",
                     "-cert", f"global-{role}-keyraft.pem",
                     "-key", f"global-{role}-keyraft-key.pem")
        out = r.stdout.decode("utf-8", "replace")
        assert r.returncode == 0, (out, r.stderr)
        assert "Verify return code: 0 (ok)" in out
        # The server saw and accepted our certificate.
        assert "Client certificate" in out, out
        assert f"CN = {role}.global.keyraft" in out or \
            f"CN={role}.global.keyraft" in out
    finally:
        srv.stop()


def test_handshake_refused_without_client_cert(pki):
    srv = SServer(pki, "global-server-keyraft.pem",
                  "global-server-keyraft-key.pem", CA)
    try:
        r = s_client(pki, srv.port, "-CAfile", CA,
                     "-verify_hostname", "server.global.keyraft")
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        assert r.returncode != 0
        assert "Client certificate" not in out
        assert "alert certificate required" in out, out
    finally:
        srv.stop()


def test_handshake_refused_for_other_ca(pki):
    other = pki / "other"
    other.mkdir()
    kr(other, "tls", "ca", "create")
    kr(other, "tls", "cert", "create", "-cli")
    srv = SServer(pki, "global-server-keyraft.pem",
                  "global-server-keyraft-key.pem", CA)
    try:
        # Our client does not trust a server from another CA ...
        r = s_client(pki, srv.port, "-CAfile", str(other / CA),
                     "-cert", "global-cli-keyraft.pem",
                     "-key", "global-cli-keyraft-key.pem")
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        assert r.returncode != 0
        assert "certificate verify failed" in out, out
        assert "Client certificate" not in out
    finally:
        srv.stop()
    srv = SServer(pki, "global-server-keyraft.pem",
                  "global-server-keyraft-key.pem", CA)
    try:
        # ... and the server does not accept a client from another CA.
        r = s_client(pki, srv.port, "-CAfile", CA,
                     "-cert", str(other / "global-cli-keyraft.pem"),
                     "-key", str(other / "global-cli-keyraft-key.pem"))
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        assert r.returncode != 0
        assert "alert unknown ca" in out, out
        assert "Client certificate" not in out
    finally:
        srv.stop()


def test_server_name_is_checked(pki):
    srv = SServer(pki, "global-server-keyraft.pem",
                  "global-server-keyraft-key.pem", CA)
    try:
        r = s_client(pki, srv.port, "-CAfile", CA,
                     "-verify_hostname", "server.eu.keyraft",
                     "-cert", "global-cli-keyraft.pem",
                     "-key", "global-cli-keyraft-key.pem")
        assert r.returncode != 0
        assert "Verify return code: 62" in r.stdout.decode() or \
            "hostname mismatch" in (r.stdout + r.stderr).decode()
    finally:
        srv.stop()
