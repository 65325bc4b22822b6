"""One ACME order through HTTP-01 with a webroot, polling every ``--poll`` seconds (the
acme library's own ``poll_and_finalize`` sleeps 1 s between polls): the raw protocol's time
for the create-breakdown bench (``bench/create_breakdown.py``), which runs it on the lab
host over SSH with the bench venv's Python (``acme`` from PyPI, as certbot's dependency).

Prints ``mark NAME $EPOCHREALTIME``-style lines: ``start``, ``account`` (directory fetched,
account registered or looked up), ``order`` (new order placed), ``answered`` (challenge file
written, challenge answered), ``valid`` (authorization valid), ``finalized`` (order valid),
``cert`` (certificate downloaded). Writes ``privkey.pem`` and ``fullchain.pem`` to ``--out``.
No omni code is used.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC


def mark(name: str) -> None:
    print(f"mark {name} {time.time():.6f}", flush=True)


def account(directory: str, ca_bundle: str, key_file: Path) -> client.ClientV2:
    if key_file.is_file():
        key = JWK.json_loads(key_file.read_bytes())
    else:
        key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        key_file.write_text(key.json_dumps())
        key_file.chmod(0o600)
    net = client.ClientNetwork(key, alg=ES256, user_agent="omni-bench", verify_ssl=ca_bundle)
    acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net)
    try:
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    except errors.ConflictError as exc:  # the account exists: bind to it
        net.account = messages.RegistrationResource(uri=exc.location,
                                                    body=messages.Registration())
    return acme


def order(acme: client.ClientV2, webroot: Path, domain: str, poll: float,
          out: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    orderr = acme.new_order(crypto_util.make_csr(key, [domain]))
    mark("order")
    challenge_dir = webroot / ".well-known" / "acme-challenge"
    challenge_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for authzr in orderr.authorizations:
            challb = next(c for c in authzr.body.challenges
                          if isinstance(c.chall, challenges.HTTP01))
            response, validation = challb.chall.response_and_validation(acme.net.key)
            path = challenge_dir / challb.chall.encode("token")
            path.write_text(validation)
            written.append(path)
            acme.answer_challenge(challb, response)
        mark("answered")
        for authzr in orderr.authorizations:
            while True:
                current, _ = acme.poll(authzr)
                if current.body.status == messages.STATUS_VALID:
                    break
                if current.body.status != messages.STATUS_PENDING:
                    raise SystemExit(f"authorization {current.body.status}: {current.body}")
                time.sleep(poll)
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    mark("valid")
    orderr = acme.begin_finalization(orderr)
    while orderr.body.status != messages.STATUS_VALID or orderr.body.certificate is None:
        if orderr.body.status == messages.STATUS_INVALID:
            raise SystemExit(f"order invalid: {orderr.body.error}")
        time.sleep(poll)
        response = acme._post_as_get(orderr.uri)  # the library has no public single poll
        orderr = orderr.update(body=messages.Order.from_json(response.json()))
    mark("finalized")
    fullchain = acme._post_as_get(orderr.body.certificate).text
    mark("cert")
    out.mkdir(parents=True, exist_ok=True)
    (out / "privkey.pem").write_bytes(key)
    os.chmod(out / "privkey.pem", 0o600)
    (out / "fullchain.pem").write_text(fullchain)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--directory", required=True)
    parser.add_argument("--ca-bundle", required=True)
    parser.add_argument("--webroot", type=Path, required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--account-key", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--poll", type=float, default=0.02)
    args = parser.parse_args()
    mark("start")
    acme = account(args.directory, args.ca_bundle, args.account_key)
    mark("account")
    order(acme, args.webroot, args.domain, args.poll, args.out)


if __name__ == "__main__":
    main()
