"""One ACME order for a set of names, with the host's single, reused ACME account.

The account key (a JWK, JSON) lives on the host at ``acme.account_key_file`` (0600) and is
created on first use. With an existing key the account is looked up (``onlyReturnExisting``)
and registered only if the CA does not know it. Every order gets a fresh EC P-256 key made
here; it is returned to the caller and never logged or put in an exception.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import requests
from acme import challenges, crypto_util, messages
from acme import errors as acme_errors
from acme.client import ClientNetwork, ClientV2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.errors import DeserializationError
from josepy.jwa import ES256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from omni.acme.polling import Poller, finalize, poll_authorizations
from omni.acme.webroot import Webroot
from omni.errors import StepFailed
from omni.inventory.models import AcmeSettings
from omni.transport.base import Transport

USER_AGENT = "omni"
# Pebble rejects 5 % of nonces; the library retries a badNonce once, we retry more.
BAD_NONCE_ATTEMPTS = 5
ORDER_ATTEMPTS = 2


@dataclass(frozen=True)
class Issued:
    privkey_pem: bytes
    fullchain_pem: bytes

    def __repr__(self) -> str:  # never let the key reach a log through repr()
        return "Issued(privkey=********, fullchain=...)"


class _Network(ClientNetwork):
    """``ClientNetwork`` retrying ``badNonce`` a bounded number of times."""

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(1, BAD_NONCE_ATTEMPTS + 1):
            try:
                response: requests.Response = self._post_once(*args, **kwargs)
                return response
            except messages.Error as exc:
                if exc.code != "badNonce" or attempt == BAD_NONCE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")


def load_or_create_account_key(transport: Transport, path: str) -> tuple[JWK, bool]:
    """The host's account key, and whether it already existed. Creates it (0600) if absent."""
    raw = transport.read_file(path)
    if raw is not None:
        try:
            return JWK.json_loads(raw), True
        except (ValueError, DeserializationError):
            raise StepFailed(f"ACME account key {path} is not a JWK; refusing to replace it "
                             "(move it away to start a new account)", path=path) from None
    key = JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    transport.run(["mkdir", "-p", posixpath.dirname(path)])
    transport.write_file(path, key.json_dumps().encode(), mode=0o600)
    return key, False


def _alg(key: JWK) -> JWASignature:
    return ES256 if isinstance(key, JWKEC) else RS256


def open_account(settings: AcmeSettings, key: JWK, key_existed: bool) -> ClientV2:
    """A client bound to the host's account: looked up when the key existed, else registered."""
    verify: Any = settings.ca_bundle or True
    net = _Network(key, alg=_alg(key), user_agent=USER_AGENT, verify_ssl=verify)
    client = ClientV2(ClientV2.get_directory(settings.directory_url, net), net)
    if key_existed:
        try:
            client.new_account(messages.NewRegistration(only_return_existing=True))
        except acme_errors.ConflictError as exc:  # 200 + Location: the account exists
            _bind(net, exc.location)
            return client
        except messages.Error as exc:
            if exc.code != "accountDoesNotExist":
                raise
    try:
        client.new_account(
            messages.NewRegistration.from_data(
                email=settings.email, terms_of_service_agreed=True
            )
        )
    except acme_errors.ConflictError as exc:
        _bind(net, exc.location)
    return client


def _bind(net: ClientNetwork, location: str) -> None:
    net.account = messages.RegistrationResource(uri=location, body=messages.Registration())


def new_private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _order_once(
    client: ClientV2, webroot: Webroot, domains: Sequence[str], deadline_seconds: float
) -> Issued:
    key_pem = new_private_key_pem()
    orderr = client.new_order(crypto_util.make_csr(key_pem, list(domains)))
    account_key = client.net.key
    written: list[str] = []
    try:
        answers = []
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # the CA remembers a recent validation for this account
            challb = next(
                (c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)),
                None,
            )
            if challb is None:
                raise StepFailed(
                    f"ACME server offers no http-01 challenge for {authzr.body.identifier.value}"
                )
            response, validation = challb.chall.response_and_validation(account_key)
            token = challb.chall.encode("token")
            webroot.put(token, validation.encode())
            written.append(token)
            answers.append((challb, response))
        for challb, response in answers:
            client.answer_challenge(challb, response)
        poller = Poller(deadline_seconds)
        orderr = poll_authorizations(client, orderr, poller)
    finally:
        for token in written:
            webroot.remove(token)
    fullchain = finalize(client, orderr, poller)
    return Issued(privkey_pem=key_pem, fullchain_pem=fullchain.encode())


def issue(
    transport: Transport,
    settings: AcmeSettings,
    domains: Sequence[str],
    deadline_seconds: float = 90.0,
    account_lock: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> Issued:
    """Order and fetch a certificate for ``domains`` through the host's webroot.

    Writes the account key (first use, under ``account_lock``) and challenge files on the
    host; always removes the
    challenge files. Raises ``StepFailed`` with the CA's reason; the message never holds key
    material.
    """
    webroot = Webroot(transport, settings.webroot)
    try:
        # Two first orders at once on a host must end with one account key, not two
        # fighting over the file: creating or registering it happens under a host lock.
        with account_lock():
            key, existed = load_or_create_account_key(transport, settings.account_key_file)
            client = open_account(settings, key, existed)
        for attempt in range(1, ORDER_ATTEMPTS + 1):
            try:
                return _order_once(client, webroot, domains, deadline_seconds)
            except messages.Error as exc:
                if exc.code != "badNonce" or attempt == ORDER_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")
    except acme_errors.ValidationError as exc:
        raise StepFailed(f"ACME validation failed: {_one_line(str(exc))}") from None
    except acme_errors.TimeoutError:
        raise StepFailed(
            f"ACME order for {', '.join(domains)} not finalized within {deadline_seconds:g}s"
        ) from None
    except (messages.Error, acme_errors.Error) as exc:
        raise StepFailed(f"ACME error: {_one_line(str(exc) or type(exc).__name__)}") from None
    except requests.RequestException as exc:
        raise StepFailed(
            f"ACME server {settings.directory_url} unreachable: {_one_line(str(exc))}"
        ) from None


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[:500]
