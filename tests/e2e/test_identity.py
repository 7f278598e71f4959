"""Workload identities over real processes: tokens signed by keyraft and
checked by two independent verifiers through keyraft's own JWKS (PyJWT's
PyJWKClient, and jose's createRemoteJWKSet in node), rotation and
prepublished keys, every rejection of /v1/identity/verify, RFC 7523
client assertions, OIDC discovery, the identity record that keeps the
key GC and `remove` away from keys whose tokens still verify, keys and
identity records through snapshots (whole and redacted), and the same
over a three-server cluster.

The node verifier lives in tests/e2e/jwks-node (package.json and its lock
file; scripts/deps.sh runs `npm ci` there).
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

from conftest import SLOW, UUID_RE, Agent, cluster_leader, http

SIGN = "/v1/identity/sign"
VERIFY = "/v1/identity/verify"
ASSERT = "/v1/identity/client-assertion"
JWKS = "/.well-known/jwks.json"
OIDC = "/.well-known/openid-configuration"
ALLOC = "8d3c0b7e-4a4f-4c8e-9d4b-1e2f3a4b5c6d"
NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "jwks-node")


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def parts(token):
    h, p, s = token.split(".")
    return json.loads(b64d(h)), json.loads(b64d(p)), s


def with_issuer(a):
    """Gives agent a (not started) its own address as oidc_issuer."""
    with open(a.config_path, "a") as f:
        f.write(f'\nserver {{\n  oidc_issuer = "{a.addr}"\n}}\n')
    return a


def sign(a, expect=200, **fields):
    body = {"JobID": "web", "Group": "api", "Task": "server",
            "AllocID": ALLOC, "Audience": ["vault.io"], "TTL": "1h"}
    body.update(fields)
    body = {k: v for k, v in body.items() if v is not None}
    r = a.api("POST", SIGN, body)
    assert r.status == expect, r
    return r.json() if expect == 200 else r


def verify(a, token, **fields):
    return a.api("POST", VERIFY, {"JWT": token, **fields})


def node_verify(jwks_uri, tokens):
    """jose's createRemoteJWKSet + jwtVerify on each token."""
    node = shutil.which("node")
    assert node, "node is missing: run scripts/deps.sh"
    assert os.path.isdir(os.path.join(NODE_DIR, "node_modules", "jose")), \
        "jose is missing: run scripts/deps.sh (npm ci in tests/e2e/jwks-node)"
    r = subprocess.run([node, os.path.join(NODE_DIR, "verify.mjs")],
                       input=json.dumps({"jwks_uri": jwks_uri,
                                         "tokens": tokens}).encode(),
                       capture_output=True, timeout=30 * SLOW)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def issuer_agent(tmp_path_factory):
    """One agent with oidc_issuer set, for tests that do not rotate."""
    a = with_issuer(Agent(tmp_path_factory.mktemp("identity")))
    a.start()
    yield a
    if a.proc is not None and a.proc.poll() is None:
        a.stop()


# ------------------------------------------------------------ signing

def test_sign_header_and_claims(issuer_agent):
    a = issuer_agent
    key = a.active_key()["KeyID"]
    before = int(time.time())
    out = sign(a, Namespace="prod", IdentityName="vault_default",
               Audience=["vault.io", "consul.io"], TTL="90m",
               ExtraClaims={"team": "payments"}, VaultRole="web-role")
    after = int(time.time())
    assert set(out) == {"JWT", "KeyID", "Expiration"}
    assert out["KeyID"] == key
    header, claims, sig = parts(out["JWT"])
    # The header is exactly {alg, kid, typ}; RS256 with the root KeyID.
    assert header == {"alg": "RS256", "kid": key, "typ": "JWT"}
    assert len(b64d(sig)) == 256
    assert before <= claims["iat"] <= after
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 90 * 60
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ",
                         time.gmtime(claims["exp"])) == out["Expiration"]
    assert UUID_RE.match(claims["jti"])
    jti = claims.pop("jti")
    for k in ("iat", "nbf", "exp"):
        claims.pop(k)
    # Spec 6.1, exactly.
    assert claims == {
        "iss": a.addr,
        "sub": "global:prod:web:api:server:vault_default",
        "aud": ["vault.io", "consul.io"],
        "nomad_namespace": "prod",
        "nomad_job_id": "web",
        "nomad_allocation_id": ALLOC,
        "nomad_task": "server",
        "vault_role": "web-role",
        "extra_claims": {"team": "payments"},
    }
    # A fresh jti every time; a service identity carries nomad_service.
    out2 = sign(a, Task=None, Service="web-http", TTL=None, Audience=None)
    _, c2, _ = parts(out2["JWT"])
    assert c2["jti"] != jti
    assert c2["sub"] == "global:default:web:api:web-http:default"
    assert c2["nomad_service"] == "web-http" and "nomad_task" not in c2
    # The implicit default identity: Nomad's audience, and no exp.
    assert c2["aud"] == ["nomadproject.io"]
    assert "exp" not in c2
    assert out2["Expiration"] == "0001-01-01T00:00:00Z"


def test_sign_eddsa(issuer_agent):
    a = issuer_agent
    key = a.active_key()["KeyID"]
    out = sign(a, Algorithm="EdDSA")
    header, claims, sig = parts(out["JWT"])
    assert header == {"alg": "EdDSA", "kid": key + ".ed25519", "typ": "JWT"}
    assert len(b64d(sig)) == 64
    assert out["KeyID"] == key
    # ?pretty indents the reply like every other route.
    r = a.api("POST", SIGN + "?pretty",
              {"JobID": "web", "Group": "api", "Task": "server",
               "AllocID": ALLOC, "Algorithm": "EdDSA"})
    assert r.status == 200 and r.text.startswith('{\n    "JWT": "'), r


def test_sign_rejects_bad_requests(issuer_agent):
    a = issuer_agent
    for fields, text in (
            ({"Ttl": "1h"}, 'unknown field "Ttl"'),
            ({"JobID": None}, "JobID is required"),
            ({"Service": "s"}, "exactly one of Task and Service"),
            ({"JobID": "a:b"}, "invalid JobID"),
            ({"TTL": "-5m"}, "TTL"),
            ({"IdentityName": "vault", "Audience": None},
             "Audience is required"),
            ({"Algorithm": "HS256"}, "Algorithm"),
            ({"ExtraClaims": {"a": 1}}, "ExtraClaims")):
        r = sign(a, expect=400, **fields)
        assert text in r.text, (fields, r.text)
    # A token longer than the verifier accepts is never handed out.
    r = sign(a, expect=400, Audience=["a" * 256] * 16,
             ExtraClaims={f"c{i}": "v" * 1024 for i in range(12)})
    assert "more than 16384" in r.text, r
    r = a.api("POST", SIGN, "not json")
    assert r.status == 400 and "JSON" in r.text, r
    r = a.api("GET", SIGN)
    assert r.status == 405, r


# ------------------------------------------------------------ verifiers

def test_pyjwt_verifies_through_jwks(issuer_agent):
    """PyJWT's own JWKS client, found through OIDC discovery, checks
    signature, audience and issuer of RS256 and EdDSA tokens."""
    a = issuer_agent
    disc = a.api("GET", OIDC).json()
    client = jwt.PyJWKClient(disc["jwks_uri"])
    for alg in ("RS256", "EdDSA"):
        token = sign(a, Algorithm=alg)["JWT"]
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key.key, algorithms=[alg],
                            audience="vault.io", issuer=disc["issuer"])
        assert claims["sub"] == "global:default:web:api:server:default"
        # The same verifier refuses what it should: another audience,
        # another issuer, and the other algorithm.
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(token, key.key, algorithms=[alg], audience="other")
        with pytest.raises(jwt.InvalidIssuerError):
            jwt.decode(token, key.key, algorithms=[alg], audience="vault.io",
                       issuer="https://evil.example")
        other = "EdDSA" if alg == "RS256" else "RS256"
        with pytest.raises(jwt.InvalidAlgorithmError):
            jwt.decode(token, key.key, algorithms=[other],
                       audience="vault.io")


def test_jose_verifies_through_jwks(issuer_agent):
    a = issuer_agent
    key = a.active_key()["KeyID"]
    rs = sign(a)["JWT"]
    ed = sign(a, Algorithm="EdDSA")["JWT"]
    out = node_verify(a.url(JWKS), [
        {"jwt": rs, "algorithms": ["RS256"], "audience": "vault.io",
         "issuer": a.addr},
        {"jwt": ed, "algorithms": ["EdDSA"], "audience": "vault.io",
         "issuer": a.addr},
        {"jwt": rs, "algorithms": ["RS256"], "audience": "other"},
        {"jwt": ed, "algorithms": ["RS256"]},
    ])
    assert out[0]["ok"] and out[0]["kid"] == key, out[0]
    assert out[0]["payload"]["nomad_task"] == "server"
    assert out[1]["ok"] and out[1]["kid"] == key + ".ed25519", out[1]
    assert out[1]["alg"] == "EdDSA"
    assert not out[2]["ok"] and out[2]["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED", out[2]
    assert not out[3]["ok"], out[3]


def test_jwks_shape_and_cache_control(issuer_agent):
    a = issuer_agent
    key = a.active_key()["KeyID"]
    r = a.api("GET", JWKS)
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/json"
    keys = {k["kid"]: k for k in r.json()["keys"]}
    assert set(keys) == {key, key + ".ed25519"}
    rsa, okp = keys[key], keys[key + ".ed25519"]
    assert set(rsa) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (rsa["kty"], rsa["use"], rsa["alg"], rsa["e"]) == \
        ("RSA", "sig", "RS256", "AQAB")
    assert len(b64d(rsa["n"])) == 256
    assert okp == {"kty": "OKP", "crv": "Ed25519", "kid": key + ".ed25519",
                   "use": "sig", "alg": "EdDSA", "x": okp["x"]}
    assert len(b64d(okp["x"])) == 32
    # Spec 4.1: half of the 720h default threshold for a new key, plus
    # at most 10%.
    cc = r.headers["Cache-Control"]
    assert cc.startswith("max-age=")
    age = int(cc[len("max-age="):])
    assert 359 * 3600 <= age <= 396 * 3600, cc
    assert int(r.headers["X-Nomad-Index"]) > 0


def test_oidc_discovery(issuer_agent, agent):
    r = issuer_agent.api("GET", OIDC)
    assert r.status == 200, r
    assert r.json() == {
        "issuer": issuer_agent.addr,
        "jwks_uri": issuer_agent.addr + JWKS,
        "id_token_signing_alg_values_supported": ["RS256", "EdDSA"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }
    # Without oidc_issuer: 404, and tokens carry no iss.
    r = agent.api("GET", OIDC)
    assert r.status == 404 and r.text == "OIDC Discovery endpoint disabled"
    _, claims, _ = parts(sign(agent)["JWT"])
    assert "iss" not in claims


# ------------------------------------------------------------ /verify

def test_verify_accepts_and_reports(issuer_agent):
    a = issuer_agent
    key = a.active_key()["KeyID"]
    for alg in ("RS256", "EdDSA"):
        token = sign(a, Algorithm=alg)["JWT"]
        r = verify(a, token, Audience="vault.io")
        assert r.status == 200, r
        body = r.json()
        assert body["KeyID"] == key and body["Algorithm"] == alg
        assert body["Claims"] == parts(token)[1]
        r = verify(a, token, Audience="nope")
        assert r.status == 400 and "audience" in r.text, r


def test_verify_rejects_forgeries(issuer_agent, tmp_path):
    a = issuer_agent
    key = a.active_key()["KeyID"]
    rs = sign(a)["JWT"]
    ed = sign(a, Algorithm="EdDSA")["JWT"]
    h, p, s = rs.split(".")
    eh, ep, es = ed.split(".")
    claims = json.loads(b64d(p))

    def header(**fields):
        return b64e(json.dumps(fields).encode())

    # The RSA public key as PEM, the classic HS256 confusion key.
    jwk = [k for k in a.api("GET", JWKS).json()["keys"] if k["kid"] == key][0]
    pub = RSAPublicNumbers(int.from_bytes(b64d(jwk["e"]), "big"),
                           int.from_bytes(b64d(jwk["n"]), "big")).public_key()
    pem = pub.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_head = header(alg="HS256", kid=key, typ="JWT")
    hs_sig = b64e(hmac.new(pem, f"{hs_head}.{p}".encode(),
                           hashlib.sha256).digest())
    # Another existing key, to swap kids between.
    claims2 = dict(claims, sub="global:default:admin:api:server:default")
    forged = {
        "tampered payload":
            (f"{h}.{b64e(json.dumps(claims2).encode())}.{s}", "signature"),
        "signature of another token": (f"{h}.{p}.{es}", "signature"),
        "kid swapped to the Ed25519 key":
            (f"{header(alg='RS256', kid=key + '.ed25519', typ='JWT')}.{p}.{s}",
             "does not match"),
        "RS256 header on an Ed25519 token":
            (f"{header(alg='RS256', kid=key + '.ed25519', typ='JWT')}.{ep}.{es}",
             "does not match"),
        "EdDSA header on the RSA kid":
            (f"{header(alg='EdDSA', kid=key, typ='JWT')}.{ep}.{es}",
             "does not match"),
        "alg none": (f"{header(alg='none', kid=key)}.{p}.", "no signature"),
        "alg none with a signature":
            (f"{header(alg='none', kid=key)}.{p}.{s}", "none"),
        "HS256 keyed with the RSA public key":
            (f"{hs_head}.{p}.{hs_sig}", "does not match"),
        "unknown kid":
            (f"{header(alg='RS256', kid='00000000-0000-4000-8000-000000000000')}"
             f".{p}.{s}", "unknown key ID"),
        "no kid": (f"{header(alg='RS256')}.{p}.{s}", "unknown key ID"),
        "not a JWS": ("hello", "compact JWS"),
        "crit header":
            (f"{header(alg='RS256', kid=key, crit=['exp'])}.{p}.{s}", "crit"),
    }
    for name, (token, text) in forged.items():
        r = verify(a, token)
        assert r.status == 400, (name, r)
        assert "invalid token" in r.text and text in r.text, (name, r.text)
    # The genuine ones still pass.
    assert verify(a, rs).status == 200
    assert verify(a, ed).status == 200
    # Unknown fields and a missing JWT are request errors.
    assert "unknown field" in a.api("POST", VERIFY, {"Jwt": rs}).text
    assert "JWT is required" in a.api("POST", VERIFY, {}).text


def test_verify_expiry_and_leeway(issuer_agent):
    a = issuer_agent
    token = sign(a, TTL="1s")["JWT"]
    assert verify(a, token, Leeway="0s").status == 200
    exp = parts(token)[1]["exp"]
    while time.time() < exp + 1.2:
        time.sleep(0.2)
    r = verify(a, token, Leeway="0s")
    assert r.status == 400 and "expired" in r.text, r
    # The default leeway (60 s) still accepts it, like Nomad's verifier;
    # the leeway has a ceiling.
    assert verify(a, token).status == 200
    r = verify(a, token, Leeway="10m")
    assert r.status == 400 and "Leeway" in r.text, r
    # PyJWT agrees that it expired.
    client = jwt.PyJWKClient(a.url(JWKS))
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, client.get_signing_key_from_jwt(token).key,
                   algorithms=["RS256"], audience="vault.io")


# ------------------------------------------------------------ assertions

def test_client_assertion(issuer_agent):
    a = issuer_agent
    key = a.active_key()["KeyID"]
    r = a.api("POST", ASSERT, {"ClientID": "keyraft-client",
                               "Audience": ["https://idp.example/token"],
                               "ExtraHeaders": {"x5t": "abc"}})
    assert r.status == 200, r
    out = r.json()
    header, claims, _ = parts(out["JWT"])
    assert header == {"alg": "RS256", "kid": key, "typ": "JWT", "x5t": "abc"}
    assert claims["iss"] == claims["sub"] == "keyraft-client"
    assert claims["aud"] == ["https://idp.example/token"]
    assert claims["nbf"] == claims["iat"] - 1
    assert claims["exp"] == claims["iat"] + 300
    assert UUID_RE.match(claims["jti"])
    # An identity provider checks it with our JWKS.
    client = jwt.PyJWKClient(a.url(JWKS))
    jwt.decode(out["JWT"], client.get_signing_key_from_jwt(out["JWT"]).key,
               algorithms=["RS256"], audience="https://idp.example/token")
    for body, text in (
            ({"Audience": ["x"]}, "ClientID is required"),
            ({"ClientID": "c"}, "Audience is required"),
            ({"ClientID": "c", "Audience": ["x"],
              "ExtraHeaders": {"alg": "none"}}, "set by the signer")):
        r = a.api("POST", ASSERT, body)
        assert r.status == 400 and text in r.text, (body, r)


# ------------------------------------------------------------ rotation

def test_rotation_and_prepublished_keys(make_agent):
    a = make_agent()
    old = a.active_key()["KeyID"]
    t_old = {alg: sign(a, Algorithm=alg)["JWT"] for alg in ("RS256", "EdDSA")}
    # A prepublished key is in JWKS before any token uses it, and new
    # tokens still come from the active key.
    pub = a.rotate(f"?publish_time={(time.time() + 3600) * 1e9:.0f}")["KeyID"]
    kids = {k["kid"] for k in a.api("GET", JWKS).json()["keys"]}
    assert {pub, pub + ".ed25519", old, old + ".ed25519"} <= kids
    assert parts(sign(a)["JWT"])[0]["kid"] == old
    # Rotation: new tokens carry the new kid, old ones still verify, here
    # and for both third-party verifiers.
    new = a.rotate()["KeyID"]
    t_new = {alg: sign(a, Algorithm=alg)["JWT"] for alg in ("RS256", "EdDSA")}
    assert parts(t_new["RS256"])[0]["kid"] == new
    assert parts(t_new["EdDSA"])[0]["kid"] == new + ".ed25519"
    tokens = list(t_old.items()) + list(t_new.items())
    client = jwt.PyJWKClient(a.url(JWKS))
    for alg, token in tokens:
        assert verify(a, token).status == 200, alg
        jwt.decode(token, client.get_signing_key_from_jwt(token).key,
                   algorithms=[alg], audience="vault.io")
    out = node_verify(a.url(JWKS), [
        {"jwt": t, "algorithms": [alg], "audience": "vault.io"}
        for alg, t in tokens])
    assert all(o["ok"] for o in out), out
    assert [o["kid"].split(".")[0] for o in out] == [old, old, new, new]
    states = {k["KeyID"]: k["State"] for k in a.keys()}
    assert states == {old: "inactive", pub: "prepublished", new: "active"}
    # An old token relabelled with the new key's kid does not verify.
    h, p, s = t_old["RS256"].split(".")
    hdr = b64e(json.dumps({"alg": "RS256", "kid": new, "typ": "JWT"}).encode())
    r = verify(a, f"{hdr}.{p}.{s}")
    assert r.status == 400 and "signature" in r.text, r


# ------------------------------------------------------------ record, GC

def raft_index(a, n):
    """The raft index of a Variable write (one entry on a single server)."""
    r = a.api("PUT", f"/v1/var/probe/{n}", {"Items": {"k": "v"}})
    assert r.status == 200, r
    return int(r.headers["X-Nomad-Index"])


def test_record_costs_few_raft_entries(agent):
    """Signing records the key's use in raft before returning a token the
    record does not cover yet, rounded up: 40 signings with a one-hour TTL
    cost one entry, the no-exp flag one more, and 48 concurrent signings
    with a longer TTL one more."""
    i0 = raft_index(agent, 0)
    for _ in range(40):
        sign(agent)
    i1 = raft_index(agent, 1)
    assert i1 - i0 == 2, (i0, i1)  # one record + the probe write
    for _ in range(5):
        sign(agent, TTL="0s")
    i2 = raft_index(agent, 2)
    assert i2 - i1 == 2, (i1, i2)
    # A longer TTL needs a new record, once, also when many signings that
    # need it arrive together (they wait on the one proposal; the RSA
    # signatures run on the thread pool).
    with ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(lambda _: sign(agent, TTL="72h"), range(48)))
    assert raft_index(agent, 3) - i2 == 2
    assert len({parts(o["JWT"])[1]["jti"] for o in outs}) == 48
    client = jwt.PyJWKClient(agent.url(JWKS))
    for o in outs[:4]:
        jwt.decode(o["JWT"], client.get_signing_key_from_jwt(o["JWT"]).key,
                   algorithms=["RS256"], audience="vault.io")


def test_remove_and_gc_keep_keys_with_live_identities(make_agent):
    """An identity that can still verify keeps its key: one without exp
    until a forced remove, one with exp until it expires; a key that
    signed nothing is collected on schedule."""
    a = make_agent('''
server {
  root_key_rotation_threshold = "6s"
  root_key_gc_interval        = "1s"
  root_key_gc_threshold       = "1s"
}
''')
    k_noexp = a.active_key()["KeyID"]
    assert sign(a, TTL="0s")["KeyID"] == k_noexp
    k_exp = a.rotate()["KeyID"]
    out = sign(a, TTL="1h")
    assert out["KeyID"] == k_exp
    token = out["JWT"]
    k_unused = a.rotate()["KeyID"]
    a.rotate()
    r = a.api("DELETE", f"/v1/operator/keyring/key/{k_noexp}")
    assert r.status == 409 and "without expiry" in r.text, r
    r = a.api("DELETE", f"/v1/operator/keyring/key/{k_exp}")
    assert r.status == 409 and "verify until" in r.text, r
    # The GC: keys are collectable 7 s after creation.
    deadline = time.time() + 20 * SLOW
    while time.time() < deadline:
        ids = {k["KeyID"] for k in a.keys()}
        if k_unused not in ids:
            break
        time.sleep(0.25)
    assert k_unused not in ids, "the unused key was never collected"
    assert k_noexp in ids and k_exp in ids
    assert verify(a, token).status == 200
    # -force removes them all the same.
    for k in (k_noexp, k_exp):
        r = a.api("DELETE", f"/v1/operator/keyring/key/{k}?force=true")
        assert r.status == 200, r
    r = verify(a, token)
    assert r.status == 400 and "unknown key ID" in r.text, r


@pytest.mark.parametrize("from_snapshot", [False, True])
def test_record_survives_restart(make_agent, from_snapshot):
    """The record is replicated state: after a restart, whether from the
    log or from a raft snapshot taken after it, the key that signed a
    no-exp identity is still in use, and the one that signed a 1h
    identity too."""
    a = make_agent('server {\n  raft_snapshot_threshold = 16\n'
                   '  raft_snapshot_interval = "0s"\n'
                   '  raft_trailing_logs = 4\n}\n' if from_snapshot else "")
    k = a.active_key()["KeyID"]
    sign(a, TTL="0s")
    k2 = a.rotate()["KeyID"]
    sign(a, TTL="1h")
    a.rotate()
    if from_snapshot:
        for i in range(40):
            raft_index(a, i)
        raft_dir = os.path.join(a.data_dir, "raft")
        assert [f for f in os.listdir(raft_dir) if f.startswith("snapshot-")]
        assert not os.path.exists(
            os.path.join(raft_dir, "0000000000000001-0000000000000001"))
    a.stop()
    a.start()
    r = a.api("DELETE", f"/v1/operator/keyring/key/{k}")
    assert r.status == 409 and "without expiry" in r.text, r
    r = a.api("DELETE", f"/v1/operator/keyring/key/{k2}")
    assert r.status == 409 and "verify until" in r.text, r


# ------------------------------------------------------------ snapshots

def jwks_kids(a):
    r = a.api("GET", JWKS)
    assert r.status == 200, r
    return sorted(k["kid"] for k in r.json()["keys"])


def test_identities_across_snapshots_and_redaction(make_agent, tmp_path):
    """A snapshot carries the keys and their identity records.  Restored
    whole on another server, the JWKS is the same, every token verifies
    there and the key that signed one without exp stays in use.
    Restored redacted, the keys have no material: the JWKS leaves them
    out, signing and client assertions fail naming the redacted active
    key, and every token they signed is refused naming its key, until
    `rotate -now` gives a key that signs, is published alone and
    verifies (PyJWT through the JWKS); the identity records still keep
    the redacted key from a plain remove."""
    a = make_agent()
    k1 = a.active_key()["KeyID"]
    t_noexp = sign(a, TTL="0s")["JWT"]
    k2 = a.rotate("?now")["KeyID"]
    tokens = {k1: [t_noexp],
              k2: [sign(a, Algorithm=alg)["JWT"] for alg in ("RS256",
                                                             "EdDSA")]}
    plain, red = tmp_path / "plain.snap", tmp_path / "red.snap"
    a.cli("operator", "snapshot", "save", str(plain), check=True)
    a.cli("operator", "snapshot", "save", "-redact", str(red), check=True)
    info = json.loads(a.cli("operator", "snapshot", "inspect", "-json",
                            str(red), check=True).stdout)
    stats = {s["Name"]: s["Count"] for s in info["Stats"]}
    assert stats["RootKey"] == 2 and stats["KeyIdentity"] == 2, stats
    assert info["RedactedKeys"] == 2

    whole = make_agent(name="whole")
    whole.cli("operator", "snapshot", "restore", str(plain), check=True)
    assert jwks_kids(whole) == jwks_kids(a)
    for key, ts in tokens.items():
        for t in ts:
            r = verify(whole, t)
            assert r.status == 200 and r.json()["KeyID"] == key, r
    r = whole.api("DELETE", f"/v1/operator/keyring/key/{k1}")
    assert r.status == 409 and "without expiry" in r.text, r

    b = make_agent(name="redacted")
    b.cli("operator", "snapshot", "restore", str(red), check=True)
    assert all(k["Redacted"] for k in b.keys())
    assert jwks_kids(b) == []
    r = sign(b, expect=500)
    assert k2 in r.text and "redacted" in r.text and "rotate" in r.text, r
    r = b.api("POST", ASSERT, {"ClientID": "c", "Audience": ["x"]})
    assert r.status == 500 and k2 in r.text and "redacted" in r.text, r
    for key, ts in tokens.items():
        for t in ts:
            r = verify(b, t)
            assert r.status == 400 and key in r.text and \
                "redacted" in r.text, r
    r = b.api("DELETE", f"/v1/operator/keyring/key/{k1}")
    assert r.status == 409 and "without expiry" in r.text, r

    b.cli("operator", "root", "keyring", "rotate", "-now", check=True)
    k3 = b.active_key()["KeyID"]
    assert jwks_kids(b) == sorted([k3, k3 + ".ed25519"])
    out = sign(b)
    assert out["KeyID"] == k3 and parts(out["JWT"])[0]["kid"] == k3
    assert verify(b, out["JWT"]).status == 200
    client = jwt.PyJWKClient(b.url(JWKS))
    jwt.decode(out["JWT"], client.get_signing_key_from_jwt(out["JWT"]).key,
               algorithms=["RS256"], audience="vault.io")
    r = verify(b, tokens[k2][0])
    assert r.status == 400 and k2 in r.text and "redacted" in r.text, r


# ------------------------------------------------------------ cluster

def test_cluster_sign_verify_and_failover(make_cluster):
    """Any server signs (followers forward to the leader) and verifies;
    every server publishes the same JWKS; after the leader dies, the new
    leader knows which key signed identities without expiry."""
    agents = make_cluster(3)
    leader = cluster_leader(agents)
    followers = [x for x in agents if x is not leader]
    key = leader.active_key()["KeyID"]
    out = sign(followers[0], TTL="0s")
    assert out["KeyID"] == key
    r = verify(followers[1], out["JWT"])
    assert r.status == 200, r
    jwks = [x.api("GET", JWKS).json() for x in agents]
    assert jwks[0] == jwks[1] == jwks[2]
    old = key
    leader.rotate()
    # kill -9: what was acknowledged must be in the survivors' logs.  (A
    # SIGTERM would wait ~10 s here for the follower's pooled forwarding
    # connection to the leader to time out.)
    leader.kill9()
    new_leader = cluster_leader(followers)
    # Refused by the leader's check, or by the state machine if the new
    # leader has not applied the record yet when it reads its state.
    r = new_leader.api("DELETE", f"/v1/operator/keyring/key/{old}")
    assert r.status == 409 and "in use" in r.text, r
    # Tokens of the old key verify on the survivors, and new ones sign.
    assert verify(followers[0], out["JWT"]).status == 200
    assert sign(new_leader)["KeyID"] != old


def test_jwks_503_on_a_server_without_the_new_key(make_cluster):
    """A server that cannot decrypt a key that JWKS lists answers 503
    naming it (a verifier must not cache a JWKS with a key missing), and
    so do its stale reads of a Variable under that key, while the other
    servers serve both.  Here the key is wrapped only by `aead.x`, a
    keyring block two of the three servers have."""
    agents = make_cluster(3)
    odd = agents[2]
    for a in agents[:2]:
        with open(a.config_path, "a") as f:
            f.write('keyring "aead" {}\n'
                    'keyring "aead" {\n  name   = "x"\n  active = true\n}\n')
        a.stop()
        a.start()
    # The rotation must happen on a leader with aead.x active: take the
    # odd server away while the two others elect one, then bring it back
    # as a follower (pre-vote keeps it from unseating that leader).
    odd.stop()
    leader = cluster_leader(agents[:2])
    odd.start()
    assert cluster_leader(agents) is leader
    new = leader.rotate()["KeyID"]
    leader.put_var("jwks/under-x", {"k": "v"})
    assert sign(leader)["KeyID"] == new

    deadline = time.time() + 15 * SLOW
    while time.time() < deadline:
        r = odd.api("GET", JWKS)
        if r.status == 503:
            break
        assert r.status == 200, r
        time.sleep(0.1)
    assert r.status == 503 and new in r.text, r
    h = odd.api("GET", "/v1/agent/health")
    assert h.status == 500 and h.json()["keyring"]["pending_keys"] == [new]
    r = odd.api("GET", "/v1/var/jwks/under-x?stale")
    assert r.status == 503 and new in r.text, r
    # The others list the key and read the Variable; the odd server still
    # forwards consistent reads to the leader, which can.
    for a in agents[:2]:
        kids = [k["kid"] for k in a.api("GET", JWKS).json()["keys"]]
        assert any(kid.startswith(new) for kid in kids), kids
    assert odd.get_var("jwks/under-x")["Items"] == {"k": "v"}
