"""SignerInputs straight from ``openssl cms`` output, without the MIME/CMS parser.

``openssl_sign`` asks OpenSSL (an independent producer) for DER signed-data;
``signer_inputs`` loads it with asn1crypto and computes the content digest
with hashlib, which is what ``smime.structure`` hands the verifier.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import cms, x509
from cryptography.hazmat.primitives.serialization import Encoding

from sealgate.devmail import run_openssl
from sealgate.devpki import Identity
from sealgate.model import SignerInput

CONTENT = b"Content-Type: text/plain\r\n\r\nThe quarterly figures are attached.\r\n"


@dataclass
class Signed:
    content_info: cms.ContentInfo
    content: bytes

    @property
    def signed_data(self) -> cms.SignedData:
        return self.content_info["content"]

    @property
    def certificates(self) -> list[x509.Certificate]:
        certs = self.signed_data["certificates"]
        if not certs:
            return []
        return [c.chosen for c in certs if c.name == "certificate"]

    @property
    def signer_infos(self) -> list[cms.SignerInfo]:
        return list(self.signed_data["signer_infos"])

    def inputs(self, content: bytes | None = None) -> list[SignerInput]:
        return signer_inputs(self.signed_data, self.content if content is None else content)


def openssl_sign(signer: Identity, content: bytes = CONTENT, *, md: str = "sha256",
                 pss: bool = False, noattr: bool = False, keyid: bool = False,
                 nocerts: bool = False, extra: list[str] | None = None) -> Signed:
    """``openssl cms -sign -nodetach -outform DER`` over ``content``."""
    args = ["cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-md", md,
            "-signer", str(signer.cert_path), "-inkey", str(signer.key_path)]
    if pss:
        args += ["-keyopt", "rsa_padding_mode:pss"]
    if noattr:
        args.append("-noattr")
    if keyid:
        args.append("-keyid")
    if nocerts:
        args.append("-nocerts")
    args += extra or []
    return Signed(cms.ContentInfo.load(run_openssl(args, content)), content)


def signer_inputs(signed_data: cms.SignedData, content: bytes) -> list[SignerInput]:
    econtent_type = signed_data["encap_content_info"]["content_type"].native
    inputs = []
    for signer_info in signed_data["signer_infos"]:
        name = signer_info["digest_algorithm"]["algorithm"].native
        try:
            digests = [hashlib.new(name.replace("_", "-") if name.startswith("sha3") else name,
                                   content).digest()]
        except ValueError:
            digests = []
        inputs.append(SignerInput(signer_info=signer_info, content_digests=digests,
                                  econtent_type=econtent_type))
    return inputs


def resign_attrs(signer_info: cms.SignerInfo, **changes: object) -> cms.SignerInfo:
    """A copy of ``signer_info`` whose signed attribute values are replaced (no re-signing)."""
    copy = cms.SignerInfo.load(signer_info.dump())
    attrs = []
    for attr in copy["signed_attrs"]:
        name = attr["type"].native
        if name in changes:
            attrs.append({"type": name, "values": [changes[name]]})
        else:
            attrs.append(attr)
    copy["signed_attrs"] = cms.CMSAttributes(attrs)
    return cms.SignerInfo.load(copy.dump(force=True))


def asn1_cert(identity: Identity) -> x509.Certificate:
    """The asn1crypto view of a devpki identity's certificate (what the parser yields)."""
    return x509.Certificate.load(identity.cert.public_bytes(Encoding.DER))
