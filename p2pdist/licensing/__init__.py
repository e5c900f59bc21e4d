"""Licenses: manifests, terms and the content binding. Imports only identity and encoding."""

from p2pdist.licensing._content import Content, ContentFile, content_of_info
from p2pdist.licensing._manifest import (
    DOMAIN,
    INFO_KEY,
    MAX_INFO_SIZE,
    MAX_MANIFEST_SIZE,
    Collector,
    License,
    LicenseManifest,
    Signature,
    SignedManifest,
    Split,
    embed_license,
    license_of_info,
    verify_info,
    verify_manifest,
)
from p2pdist.licensing._terms import CC_LICENSES, CCTerms, cc_terms

__all__ = [
    "CC_LICENSES",
    "DOMAIN",
    "INFO_KEY",
    "MAX_INFO_SIZE",
    "MAX_MANIFEST_SIZE",
    "CCTerms",
    "Collector",
    "Content",
    "ContentFile",
    "License",
    "LicenseManifest",
    "Signature",
    "SignedManifest",
    "Split",
    "cc_terms",
    "content_of_info",
    "embed_license",
    "license_of_info",
    "verify_info",
    "verify_manifest",
]
