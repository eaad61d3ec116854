"""The run manifest (`_manifest.json`): required keys and their JSON types."""

from schemas.tables import SCHEMA_VERSION

MANIFEST_FIELDS = {
    "schema_version": str,
    "run_id": str,
    "created_utc": str,
    "inputs": list,  # log URIs
    "options": dict,  # pipeline and Beam options as given
    "teacher": dict,  # {name, version, weights_sha256}
    "counts": dict,  # {logs, windows, clips, labels, quarantined: {stage: {reason: n}}}
    "timings_s": dict,  # {stage: seconds}
    "versions": dict,  # package -> version
}


def validate_manifest(manifest: dict) -> None:
    """Raise ValueError unless `manifest` has every required key with the right type."""
    problems = [
        f"{key!r} missing" if key not in manifest else f"{key!r} is not {kind.__name__}"
        for key, kind in MANIFEST_FIELDS.items()
        if not isinstance(manifest.get(key), kind)
    ]
    if manifest.get("schema_version") not in (None, SCHEMA_VERSION):
        problems.append(f"schema_version {manifest['schema_version']!r} != {SCHEMA_VERSION!r}")
    if problems:
        raise ValueError("invalid run manifest: " + "; ".join(problems))
