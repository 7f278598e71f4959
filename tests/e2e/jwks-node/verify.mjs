// Verifies JWTs against a keyraft server's JWKS with jose's
// createRemoteJWKSet, the way a relying party (Vault, Consul, a cloud's
// federation) would.  Used by tests/e2e/test_identity.py.
//
// stdin: {"jwks_uri": "...", "tokens": [{"jwt", "algorithms",
//         "audience", "issuer"}]}   (audience and issuer optional)
// stdout: one JSON array, per token {"ok": true, "kid", "alg", "payload"}
//         or {"ok": false, "code", "message"}.
import { createRemoteJWKSet, jwtVerify } from 'jose';

let text = '';
for await (const chunk of process.stdin) text += chunk;
const input = JSON.parse(text);
const jwks = createRemoteJWKSet(new URL(input.jwks_uri));
const out = [];
for (const t of input.tokens) {
  const opts = { algorithms: t.algorithms };
  if (t.audience) opts.audience = t.audience;
  if (t.issuer) opts.issuer = t.issuer;
  try {
    const r = await jwtVerify(t.jwt, jwks, opts);
    out.push({ ok: true, kid: r.protectedHeader.kid,
               alg: r.protectedHeader.alg, payload: r.payload });
  } catch (e) {
    out.push({ ok: false, code: e.code || e.name, message: e.message });
  }
}
process.stdout.write(JSON.stringify(out));
