"""Task inputs: checked by size, by content (magic bytes, not the name alone) and given a safe name.

Nothing is stored until a file has passed every check, so a rejected input
leaves no row and no file behind.
"""

import codecs
import hashlib
import os
import zipfile
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.utils.text import get_valid_filename

from agency.json_documents import JsonDocumentRejected, json_document_check

CHUNK = 64 * 1024

CONTENT_TYPES = {
    "csv": "text/csv",
    "txt": "text/plain",
    "json": "application/json",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class UploadRejected(ValueError):
    """The input is not acceptable; nothing was stored."""

    status = 400


class UploadTooLarge(UploadRejected):
    status = 413


@dataclass
class ValidatedUpload:
    name: str
    content_type: str
    size: int
    sha256: str
    content: File
    stored_name: str = ""  # set once the file is in storage, so a rollback can remove it

    def attach_to(self, task) -> None:
        """Store the file under the task (the caller saves the task)."""
        self.content.seek(0)
        task.input_file.save(self.name, self.content, save=False)
        self.stored_name = task.input_file.name
        task.input_name = self.name
        task.input_content_type = self.content_type
        task.input_size = self.size
        task.input_sha256 = self.sha256


def safe_filename(raw: str, kind: str) -> str:
    """A plain file name: no directories, no traversal, no odd characters."""
    base = os.path.basename(raw.replace("\\", "/")).strip().lstrip(".")
    try:
        cleaned = get_valid_filename(base)
    except Exception:  # Django refuses names like "" or ".."
        cleaned = ""
    stem = os.path.splitext(cleaned)[0][:100] or "input"
    return f"{stem}.{kind}"


def kind_of(name: str) -> str:
    kind = os.path.splitext(name)[1].lower().lstrip(".")
    if kind not in CONTENT_TYPES:
        raise UploadRejected(f"Unsupported input type {kind or '(none)'!r}; send one of: {', '.join(CONTENT_TYPES)}.")
    return kind


def upload_validate(*, name: str, file: IO[bytes], size: int) -> ValidatedUpload:
    if size > settings.TASK_INPUT_MAX_BYTES:
        raise UploadTooLarge(f"The input is {size} bytes; the limit is {settings.TASK_INPUT_MAX_BYTES}.")
    kind = kind_of(name)
    file.seek(0)
    digest = hashlib.sha256()
    check = _CONTENT_CHECKS[kind]()
    for chunk in iter(lambda: file.read(CHUNK), b""):
        digest.update(chunk)
        check.feed(chunk)
    check.finish(file)
    file.seek(0)
    return ValidatedUpload(
        name=safe_filename(name, kind),
        content_type=CONTENT_TYPES[kind],
        size=size,
        sha256=digest.hexdigest(),
        content=File(file),
    )


def upload_from_text(*, text: str, name: str = "input.csv") -> ValidatedUpload:
    data = text.encode("utf-8")
    content = ContentFile(data)
    return upload_validate(name=name, file=content, size=len(data))


class _TextCheck:
    """UTF-8 text without NUL bytes (CSV, TXT)."""

    def __init__(self):
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()

    def feed(self, chunk: bytes) -> None:
        if b"\x00" in chunk:
            raise UploadRejected("The input is not text: it contains NUL bytes.")
        try:
            self.decoder.decode(chunk)
        except UnicodeDecodeError:
            raise UploadRejected("The input is not UTF-8 text.") from None

    def finish(self, file) -> None:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UploadRejected("The input is not UTF-8 text.") from None


class _JsonCheck(_TextCheck):
    def finish(self, file) -> None:
        super().finish(file)
        file.seek(0)
        if file.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
            file.seek(0)
        try:
            json_document_check(file, max_depth=settings.JSON_MAX_DEPTH)
        except JsonDocumentRejected as exc:
            raise UploadRejected(str(exc)) from None


class _PdfCheck:
    def __init__(self):
        self.head = b""

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < 5:
            self.head += chunk[:5]

    def finish(self, file) -> None:
        if not self.head.startswith(b"%PDF-"):
            raise UploadRejected("The input does not start like a PDF file.")


class _XlsxCheck(_PdfCheck):
    def finish(self, file) -> None:
        if not self.head.startswith(b"PK\x03\x04"):
            raise UploadRejected("The input is not an XLSX file (not a ZIP archive).")
        file.seek(0)
        try:
            names = set(zipfile.ZipFile(file).namelist())
        except zipfile.BadZipFile:
            raise UploadRejected("The input is not an XLSX file (damaged ZIP archive).") from None
        if not {"[Content_Types].xml", "xl/workbook.xml"} <= names:
            raise UploadRejected("The input is a ZIP archive but not an XLSX workbook.")


_CONTENT_CHECKS = {"csv": _TextCheck, "txt": _TextCheck, "json": _JsonCheck, "pdf": _PdfCheck, "xlsx": _XlsxCheck}
