"""Credentials never leave in logs, manifests or table rows: URLs are redacted first."""

import re

# Credentials that can ride in a URL: the user:password@ part, and the values of query
# parameters that carry tokens or signatures (signed URLs, SAS tokens, API keys).
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[\w.-]*(?:token|secret|password|passwd|signature|credential|key|sig|auth)[\w.-]*)=)[^&#\s]*")


def redact(text: str) -> str:
    """`text` with URL credentials replaced by `***`: never log, print or record them."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub("***@", text))
