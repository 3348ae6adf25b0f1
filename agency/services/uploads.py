"""Task inputs: checked by size, by content (magic bytes, not the name alone) and given a safe name.

Nothing is stored until a file has passed every check, so a rejected input
leaves no row and no file behind.
"""

import codecs
import hashlib
import os
import struct
import zipfile
import zlib
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
    """A ZIP archive holding a workbook, whose parts can be inflated within bounded memory and time.

    The sizes an archive declares are checked before anything is inflated (`UPLOAD_XLSX_*`),
    then every part is inflated once, a chunk at a time, which proves them: a reader stops at
    the declared size and a part that holds more fails its CRC.
    """

    def finish(self, file) -> None:
        if not self.head.startswith(b"PK\x03\x04"):
            raise UploadRejected("The input is not an XLSX file (not a ZIP archive).")
        _zip_directory_check(file)
        file.seek(0)
        try:
            archive = zipfile.ZipFile(file)
            parts = archive.infolist()
            if not {"[Content_Types].xml", "xl/workbook.xml"} <= {part.filename for part in parts}:
                raise UploadRejected("The input is a ZIP archive but not an XLSX workbook.")
            _zip_sizes_check(parts)
            for part in parts:
                with archive.open(part) as inflating:
                    while inflating.read(CHUNK):
                        pass
        except UploadRejected:
            raise
        except _DAMAGED_ZIP:
            raise UploadRejected("The input is not an XLSX file (damaged ZIP archive).") from None


# What zipfile raises on a damaged or unreadable archive (RuntimeError: an encrypted part).
_DAMAGED_ZIP = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, RuntimeError, zlib.error)
_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")
# Parts smaller than this are not held to the compression ratio: a little repetitive XML
# legitimately deflates more than a hundredfold, and cannot hurt inflated.
_RATIO_EXEMPT_BYTES = 1024 * 1024


def _zip_directory_check(file) -> None:
    """Refuse an archive with too many parts, read from its end record before zipfile loads
    its whole directory in memory (one object per part). ZIP64 archives are refused: a
    workbook never needs one, and their record could claim anything."""
    file.seek(0, os.SEEK_END)
    size = file.tell()
    tail_start = max(0, size - _END_OF_DIRECTORY.size - 0xFFFF)
    file.seek(tail_start)
    tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_OF_DIRECTORY.size:
        raise UploadRejected("The input is not an XLSX file (damaged ZIP archive).")
    _, disk, _, _, parts, directory_size, _, _ = _END_OF_DIRECTORY.unpack_from(tail, at)
    if disk != 0 or parts == 0xFFFF or directory_size == 0xFFFFFFFF or b"PK\x06\x07" in tail[max(0, at - 20) : at]:
        raise UploadRejected("The input is not an XLSX file (multi-disk or ZIP64 archive).")
    limit = settings.UPLOAD_XLSX_MAX_PARTS
    # A directory entry is 46 bytes and a name; workbook part names are short.
    if parts > limit or directory_size > limit * 512:
        raise UploadRejected(f"The workbook has more parts than the limit of {limit}.")


def _zip_sizes_check(parts: list[zipfile.ZipInfo]) -> None:
    total = sum(part.file_size for part in parts)
    if total > settings.UPLOAD_XLSX_MAX_UNCOMPRESSED_BYTES:
        raise UploadRejected(
            f"The workbook is {total} bytes uncompressed; the limit is {settings.UPLOAD_XLSX_MAX_UNCOMPRESSED_BYTES}."
        )
    ratio = settings.UPLOAD_XLSX_MAX_COMPRESSION_RATIO
    for part in parts:
        if part.file_size > _RATIO_EXEMPT_BYTES and part.file_size > ratio * part.compress_size:
            raise UploadRejected(
                f"The workbook part {part.filename!r} is compressed more than {ratio} times (a ZIP bomb?)."
            )


_CONTENT_CHECKS = {"csv": _TextCheck, "txt": _TextCheck, "json": _JsonCheck, "pdf": _PdfCheck, "xlsx": _XlsxCheck}
