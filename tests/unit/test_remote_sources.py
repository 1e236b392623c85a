"""Remote sources without a server: ids, options, redaction, filters, fingerprints, seals."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from e5_integrations import ConfigurationError
from e5_integrations._redact import redact, secrets_of
from e5_integrations.cli import _secrets, build_parser
from e5_integrations.ingest._remote import (
    RemoteSourceFile,
    _fingerprint,
    _transient,
    canonical_url,
    id_follows_url,
    is_remote,
    matches_filters,
    object_seal,
    parse_storage_options,
    probe_chunk_id,
    seal_matches,
    sealed_hash,
    storage_option_secrets,
)
from e5_integrations.ingest._sources import iter_source_files


def _remote(url: str, fingerprint: str = "etag=abc;size=3") -> RemoteSourceFile:
    return RemoteSourceFile(
        path=Path(url.split("://", 1)[1]),
        file_id=url,
        url=url,
        protocol="s3",
        fs_path=url.split("://", 1)[1],
        fingerprint=fingerprint,
        storage_options={"secret": "hunter22-secret"},
    )


def test_canonical_urls_name_the_object_not_the_way_it_was_reached() -> None:
    assert canonical_url("s3a://bkt/docs/a.txt") == "s3://bkt/docs/a.txt"
    assert canonical_url("gcs://bkt/a.txt") == "gs://bkt/a.txt"
    assert canonical_url("abfs://cont@acct.dfs.core.windows.net/p/a.txt") == "az://cont/p/a.txt"
    signed = (
        "https://bkt.s3.amazonaws.com/a.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1"
        "&X-Amz-Signature=deadbeef&X-Amz-Expires=60&version=3"
    )
    assert canonical_url(signed) == "https://bkt.s3.amazonaws.com/a.pdf?version=3"
    assert canonical_url("https://acct.blob.core.windows.net/c/a.txt?sv=2022&sig=abc%3D&se=2030") == (
        "https://acct.blob.core.windows.net/c/a.txt"
    )


def test_unknown_scheme_is_a_configuration_error() -> None:
    assert is_remote("s3://bkt/x") and is_remote("https://h/x") and not is_remote("docs/a.txt")
    with pytest.raises(ConfigurationError, match="ftp"):
        canonical_url("ftp://host/file.txt")


def test_storage_options_parse_and_their_secrets_are_masked() -> None:
    options = parse_storage_options(
        [
            "endpoint_url=http://127.0.0.1:9000",
            "key=AKIAEXAMPLE",
            "secret=s3cr3t-value",
            "anon=false",
            "client_kwargs.region_name=eu-west-1",
            "sas_token=sv=2022&sig=abcdef",
        ]
    )
    assert options["anon"] is False
    assert options["client_kwargs"] == {"region_name": "eu-west-1"}
    assert sorted(storage_option_secrets(options)) == ["AKIAEXAMPLE", "s3cr3t-value", "sv=2022&sig=abcdef"]
    with pytest.raises(ConfigurationError, match="KEY=VALUE"):
        parse_storage_options(["no-equals-sign"])


def test_cli_masks_storage_option_secrets_and_signed_source_urls() -> None:
    args = build_parser().parse_args(
        [
            "ingest",
            "https://h/a.pdf?X-Amz-Signature=0123456789abcdef&X-Amz-Credential=AKIA%2Fscope",
            "--storage-option",
            "secret=s3cr3t-value",
            "--storage-option",
            "endpoint_url=http://minio:9000",
        ]
    )
    assert isinstance(args, argparse.Namespace)
    secrets = _secrets(args)
    message = f"cannot read with secret s3cr3t-value from {args.sources[0]}"
    shown = redact(message, secrets)
    assert "s3cr3t-value" not in shown and "0123456789abcdef" not in shown and "AKIA" not in shown
    assert "http://minio:9000" not in secrets


def test_signed_url_parameters_are_redacted_anywhere() -> None:
    text = "GET https://b.s3.amazonaws.com/k?X-Amz-Security-Token=tok123&X-Amz-Signature=sig456 failed"
    assert "tok123" not in redact(text) and "sig456" not in redact(text)
    assert "sig=abc" not in redact("https://a.blob.core.windows.net/c/x?sv=1&sig=abc")
    assert "goog" in redact("https://storage.googleapis.com/b/o?X-Goog-Signature=ff00").lower()
    assert "ff00" not in redact("https://storage.googleapis.com/b/o?X-Goog-Signature=ff00")
    assert "sig456" in secrets_of("https://b/k?X-Amz-Signature=sig456")


def test_repr_of_a_remote_source_shows_no_storage_option() -> None:
    assert "hunter22" not in repr(_remote("s3://bkt/a.txt"))


def test_include_and_exclude_match_names_or_relative_paths() -> None:
    assert matches_filters("sub/a.jsonl", ["*.jsonl"], [])
    assert not matches_filters("sub/a.txt", ["*.jsonl"], [])
    assert matches_filters("2024/01/a.parquet", ["2024/*"], [])
    assert not matches_filters("2023/01/a.parquet", ["2024/*"], [])
    assert not matches_filters("sub/draft-a.md", [], ["draft-*"])


def test_include_and_exclude_on_local_folders(tmp_path: Path) -> None:
    for name in ("a.txt", "b.md", "sub/c.jsonl", "sub/draft.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    found = [
        Path(f.path).relative_to(tmp_path).as_posix()
        for f in iter_source_files([tmp_path], include=["*.txt", "sub/*"], exclude=["draft*"])
    ]
    assert found == ["a.txt", "sub/c.jsonl"]


def test_fingerprints_prefer_versions_then_etags_then_size_and_mtime() -> None:
    assert _fingerprint({"VersionId": "v1", "ETag": '"e"', "size": 3}) == "versionid=v1;size=3"
    assert _fingerprint({"ETag": '"abc"', "size": 3}) == "etag=abc;size=3"
    assert _fingerprint({"size": 3, "LastModified": "2024-01-01"}) == "size=3;mtime=2024-01-01"
    assert _fingerprint({"size": 3}) == ""


def test_probe_ids_and_seals() -> None:
    url = "s3://bkt/docs/a.txt"
    assert probe_chunk_id(_remote(url)) == f"{url}#0"
    assert probe_chunk_id(_remote("s3://bkt/t.csv")) == "s3://bkt/t.csv:2#0"
    assert probe_chunk_id(_remote("s3://bkt/r.jsonl")) == "s3://bkt/r.jsonl:1#0"
    assert probe_chunk_id(_remote("s3://bkt/x.bin")) is None
    assert id_follows_url(url, url) and id_follows_url(f"{url}:12", url)
    assert not id_follows_url("rec-1", url) and not id_follows_url(f"{url}:x", url)
    settings = {"model": "m", "chunk_tokens": 16}
    seal = object_seal(_remote(url), settings)
    assert seal == object_seal(_remote(url), dict(settings))
    assert seal != object_seal(_remote(url, "etag=other;size=3"), settings)  # the object changed
    assert seal != object_seal(_remote(url), {**settings, "chunk_tokens": 32})  # the settings changed
    assert object_seal(_remote(url, ""), settings) == ""  # no fingerprint: never skipped unread
    assert seal_matches(sealed_hash("abc", seal), seal)
    assert not seal_matches("abc", seal) and not seal_matches(None, seal) and not seal_matches("abc~", "")


def test_transient_failures_are_told_from_permanent_ones() -> None:
    assert _transient(ConnectionResetError("reset by peer"))
    assert _transient(OSError("An error occurred (SlowDown) when calling GetObject: Please reduce"))
    assert _transient(TimeoutError())
    assert not _transient(FileNotFoundError("NoSuchKey"))
    assert not _transient(PermissionError("AccessDenied"))
