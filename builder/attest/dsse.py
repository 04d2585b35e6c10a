"""DSSE envelopes (github.com/secure-systems-lab/dsse, v1): sign a payload, check a signature.

The signature covers PAE(payloadType, payload) =
    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
(LEN: decimal byte count), never the JSON around it, so the envelope's own formatting does not matter.
Keys are ECDSA P-256 in PEM (PKCS#8 or SEC1 private, SubjectPublicKeyInfo public); signatures are
ASN.1 DER over SHA-256, as cosign and in-toto write them. `keyid` is the sha256 of the public key's DER.

`verify_envelope(envelope, public_key_pem)` checks any envelope; provenance.verify_provenance(envelope, key,
digest) is what `airbuild verify --key` calls: signed, SLSA provenance, and about that image.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.attest import IN_TOTO_MEDIA_TYPE
from builder.common.errors import BuildError, InputError


class SignatureError(BuildError):
    """An envelope whose signature does not check out against the key (exit 1)."""


@dataclass(frozen=True)
class Verified:
    payload_type: str
    payload: bytes
    keyid: str

    def statement(self) -> dict:
        return json.loads(self.payload)


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _check_curve(key, where: str) -> None:
    if not isinstance(getattr(key, "curve", None), ec.SECP256R1):
        raise InputError("not an ECDSA P-256 key (make one with `openssl ecparam -name prime256v1 -genkey "
                         "-noout -out key.pem`)", path=where)


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A private key for --sign-key: an unencrypted ECDSA P-256 PEM; a clear error naming the file otherwise."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise InputError(f"cannot read the signing key ({exc.strerror})", path=path) from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"not an unencrypted PEM private key ({exc})", path=path) from None
    _check_curve(key, str(path))
    return key


def load_public_key(data: bytes | Path) -> ec.EllipticCurvePublicKey:
    """A public key (PEM bytes, or a file's path: what `--key PUB.pem` names)."""
    where = str(data) if isinstance(data, Path) else "the public key"
    try:
        pem = data.read_bytes() if isinstance(data, Path) else data
        key = serialization.load_pem_public_key(pem)
    except OSError as exc:
        raise InputError(f"cannot read the public key ({exc.strerror})", path=where) from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a PEM public key ({exc})", path=where) from None
    _check_curve(key, where)
    return key


def public_key_pem(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def keyid(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def sign_envelope(payload: bytes, key: ec.EllipticCurvePrivateKey, payload_type: str = IN_TOTO_MEDIA_TYPE) -> dict:
    signature = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    return {"payloadType": payload_type, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": keyid(key.public_key()), "sig": base64.b64encode(signature).decode()}]}


def envelope_json(envelope: dict) -> bytes:
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()


def verify_envelope(envelope: dict | bytes | str, public_key_pem: bytes | Path) -> Verified:
    """The envelope's payload once one of its signatures checks out against the key; SignatureError otherwise
    (InputError when the envelope or key cannot even be read)."""
    key = load_public_key(public_key_pem)
    if isinstance(envelope, (bytes, str)):
        try:
            envelope = json.loads(envelope)
        except ValueError as exc:
            raise InputError(f"the DSSE envelope is not JSON ({exc})") from None
    try:
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = list(envelope["signatures"])
    except (KeyError, TypeError, binascii.Error) as exc:
        raise InputError(f"not a DSSE envelope (payloadType, payload, signatures): {exc}") from None
    if not isinstance(payload_type, str):
        raise InputError("not a DSSE envelope: payloadType is not a string")
    message = pae(payload_type, payload)
    wanted = keyid(key)
    for entry in signatures:
        try:
            signature = base64.b64decode(entry["sig"], validate=True)
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (KeyError, TypeError, binascii.Error, InvalidSignature):
            continue
        return Verified(payload_type, payload, wanted)
    raise SignatureError(f"the DSSE envelope's {len(signatures)} signature(s) do not verify with the key "
                         f"sha256:{wanted}: the statement was changed after signing, or signed with another key")
