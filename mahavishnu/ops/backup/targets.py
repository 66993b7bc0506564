"""Where archives live: a local folder, or an S3-compatible bucket (boto3)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from mahavishnu.platform.errors import NotFoundError, UnavailableError

__all__ = ["LocalTarget", "S3Target", "Target"]


class Target(Protocol):
    description: str

    def put(self, source: Path, name: str) -> None: ...
    def get(self, name: str, dest: Path) -> None: ...
    def names(self) -> list[tuple[str, int]]: ...
    def delete(self, name: str) -> None: ...


class LocalTarget:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = str(folder)

    def put(self, source: Path, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{name}.partial"
        shutil.copyfile(source, partial)
        partial.replace(self.folder / name)  # readers never see half an archive

    def get(self, name: str, dest: Path) -> None:
        source = self.folder / name
        if not source.is_file():
            raise NotFoundError(f"no backup named {name!r} in {self.folder}")
        shutil.copyfile(source, dest)

    def names(self) -> list[tuple[str, int]]:
        if not self.folder.is_dir():
            return []
        return [
            (p.name, p.stat().st_size)
            for p in self.folder.iterdir()
            if p.is_file() and not p.name.startswith(".")
        ]

    def delete(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)


class S3Target:
    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None, region: str | None) -> None:
        import boto3

        self._bucket = bucket
        self._prefix = prefix
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self.description = f"s3://{bucket}/{prefix}"

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, method)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise NotFoundError(
                    f"no backup named {kwargs.get('Key', '')!r} in {self.description}"
                ) from None
            raise UnavailableError(f"S3 refused the request ({code or 'error'})") from None
        except BotoCoreError as exc:
            raise UnavailableError(f"S3 is unreachable ({type(exc).__name__})") from None

    def put(self, source: Path, name: str) -> None:
        with source.open("rb") as fh:
            self._call("put_object", Bucket=self._bucket, Key=self._prefix + name, Body=fh)

    def get(self, name: str, dest: Path) -> None:
        response = self._call("get_object", Bucket=self._bucket, Key=self._prefix + name)
        dest.write_bytes(response["Body"].read())

    def names(self) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": self._prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            found += [(o["Key"][len(self._prefix) :], int(o["Size"])) for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def delete(self, name: str) -> None:
        self._call("delete_object", Bucket=self._bucket, Key=self._prefix + name)
