"""Job-scoped credentials: what a worker on another machine shows the node's STOW-RS to hand back the
results of the one job it was given, and no other.

The node signs the job ID, with the time it signed, by a key only its own processes read (a file under
the storage root, made on first use); the credential travels with the job's task and expires after
``worker.job_credential_ttl_s``. A worker cannot make one: a worker with its own storage root has no
key, so it issues none (``credentials_of`` answers None there).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from radrouter.config.settings import SeriesAccess, Settings

#: Under the storage root; readable by the node's own user only.
KEY_FILE = "job-credential.key"
#: Names what the signature is for, so no other use of the same key could produce a valid credential.
_SALT = "radrouter.job-credential"


class CredentialRefused(PermissionError):
    """The credential is missing, not signed by this node, expired, or not a job's."""


class JobCredentials:
    """Issues and checks the credentials of jobs; one key per node."""

    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)
        self.ttl_s = ttl_s

    def issue(self, job_id: int) -> str:
        return self._serializer.dumps(job_id)

    def job_of(self, credential: str | None) -> int:
        """The job a credential was issued for; raises :class:`CredentialRefused` with the reason."""
        if not credential:
            raise CredentialRefused("no job credential (Authorization: Bearer <the job's credential>)")
        try:
            job_id = self._serializer.loads(credential, max_age=self.ttl_s)
        except SignatureExpired as error:
            raise CredentialRefused(f"the job credential expired (older than {self.ttl_s} s)") from error
        except BadSignature as error:
            raise CredentialRefused("the job credential was not issued by this node") from error
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise CredentialRefused("the job credential names no job")
        return job_id


def node_key(root: Path) -> bytes:
    """The node's key, made on first use; several processes may race to make it: one file wins."""
    path = root / KEY_FILE
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=".job-credential-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):  # another process made it first: theirs is kept
                os.link(tmp_name, path)
        finally:
            os.unlink(tmp_name)
    return path.read_text().strip().encode()


def credentials_of(settings: Settings) -> JobCredentials | None:
    """The node's issuer; None in a worker with its own storage root (it must not make a key there)."""
    if settings.worker.series_access == SeriesAccess.DICOMWEB:
        return None
    return JobCredentials(node_key(settings.storage.root.resolve()), settings.worker.job_credential_ttl_s)
