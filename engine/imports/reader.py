"""Reading import files in bounded memory: format detection, CSV in record-aligned chunks, XLSX sheets.

CSV files are read in blocks of ``CHUNK_BYTES``; each block is cut at the last record boundary (a newline
outside quotes, found by quote parity) and parsed by polars as a whole. numpy finds, for every record of
the block, its physical line number (quoted fields may hold newlines) and its number of fields (so a ragged
row is reported, not silently padded). Memory is bounded by the block size, whatever the file size.

Non-UTF-8 files (Latin-1, Windows-1252, UTF-16) are transcoded block by block with an incremental decoder;
UTF-8 blocks are validated, so a wrong encoding is reported with its line instead of producing mojibake.

XLSX sheets are read whole by fastexcel (calamine), so they are capped (``XLSX_MAX_CELLS``) and checked
against zip bombs before any inflating; a bigger sheet is refused with the advice to save it as CSV.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.brazil import format_int
from engine.errors import ValidationFailed

CHUNK_BYTES = 1024 * 1024
MAX_RECORD_BYTES = 32 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
SAMPLE_BYTES = 256 * 1024
PREVIEW_ROWS = 20
SEPARATORS = (";", ",", "\t", "|")
SEPARATOR_NAMES = {";": "ponto e vírgula", ",": "vírgula", "\t": "tabulação", "|": "barra vertical"}
ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "cp1252": "cp1252",
    "windows-1252": "cp1252",
    "utf-16": "utf-16",
}
ENCODING_LABELS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 com BOM",
    "latin-1": "Latin-1 (ISO-8859-1)",
    "cp1252": "Windows-1252",
    "utf-16": "UTF-16",
}
XLSX_MAX_CELLS = 2_000_000
XLSX_MAX_XML_BYTES = 256 * 1024 * 1024
XLSX_MAX_RATIO = 200
_RENAMED = re.compile(r"^(.*)_[0-9]+$")  # how fastexcel names a repeated header
XLSX_MAX_PART_BYTES = 16 * 1024 * 1024  # a part other than the sheets and their strings
_BINARY_SIGNATURES = {
    b"%PDF": "PDF",
    b"\x89PNG": "imagem PNG",
    b"\xff\xd8\xff": "imagem JPEG",
    b"GIF8": "imagem GIF",
    b"\x7fELF": "executável",
    b"MZ": "executável",
    b"\x1f\x8b": "arquivo gzip",
    b"Rar!": "arquivo RAR",
    b"7z\xbc\xaf": "arquivo 7-Zip",
}


class FileRefused(ValidationFailed):
    """The whole file cannot be imported (empty, binary, wrong encoding, broken quoting...).

    Carries ``line`` (and ``column`` when known) so the person can find the spot."""


def refuse(message: str, **data: Any) -> FileRefused:
    return FileRefused(
        message, errors=[{"field": data.get("column") or "arquivo", "message": message}], **data
    )


# Detection ---------------------------------------------------------------------------------------------


def sniff_file_type(head: bytes, filename: str = "") -> str:
    """``csv`` or ``xlsx`` judged by content (the name only refines the message)."""
    name = filename.lower()
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise refuse("Planilha no formato antigo do Excel (.xls) não é aceita: salve-a como .xlsx ou .csv.")
    for signature, what in _BINARY_SIGNATURES.items():
        if head.startswith(signature):
            raise refuse(f"O arquivo {filename or ''} é um {what}, não um CSV ou XLSX.".replace("  ", " "))
    if not head:
        raise refuse("O arquivo está vazio.")
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16, whose LE mark it starts with
        raise refuse("O arquivo está em UTF-32, que não é aceito: salve-o como UTF-8 (ou UTF-16, latin-1).")
    if not (head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))) and _looks_binary(head):
        suffix = " (apesar do nome .csv)" if name.endswith(".csv") else ""
        raise refuse(f"O arquivo não é texto{suffix}: o conteúdo é binário. Envie um CSV ou XLSX.")
    return "csv"


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    controls = sum(head.count(bytes([c])) for c in range(32) if c not in (9, 10, 12, 13))
    return controls > max(8, len(head) // 100)


def check_xlsx(path: str | Path) -> None:
    """Refuse zips that are not workbooks and archives that inflate beyond what we read safely."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "xl/workbook.xml" not in names:
                raise refuse("O arquivo é um ZIP, mas não uma planilha XLSX (falta xl/workbook.xml).")
            for info in zf.infolist():
                if info.file_size > XLSX_MAX_XML_BYTES:
                    raise refuse(
                        f"A planilha é grande demais para XLSX ({info.filename} descompacta para "
                        f"{info.file_size // 2**20} MiB). Salve-a como CSV, que não tem limite de tamanho."
                    )
                if (
                    info.compress_size
                    and info.file_size / info.compress_size > XLSX_MAX_RATIO
                    and info.file_size > 16 * 2**20
                ):
                    raise refuse(
                        "O XLSX parece uma bomba de compressão (descompacta mais de "
                        f"{XLSX_MAX_RATIO} vezes o seu tamanho); não será lido."
                    )
            for member in names:
                # Every part is inflated and counted, since the directory's sizes can lie: styles or the workbook
                # itself, blown up, cost the reader gigabytes or minutes as surely as a sheet would.
                if member.startswith("xl/worksheets/") or member == "xl/sharedStrings.xml":
                    _inflate_within(zf, member, XLSX_MAX_XML_BYTES)
                else:
                    _inflate_within(zf, member, XLSX_MAX_PART_BYTES, part=True)
    except zipfile.BadZipFile as exc:
        raise refuse(f"O arquivo XLSX está corrompido ({exc}).") from None


def _inflate_within(zf: zipfile.ZipFile, member: str, limit: int, *, part: bool = False) -> None:
    # Sizes in the zip directory can lie: count what actually comes out, and stop at the limit.
    total = 0
    try:
        with zf.open(member) as stream:
            while chunk := stream.read(1024 * 1024):
                total += len(chunk)
                if total > limit and part:
                    raise refuse(
                        f"O XLSX tem uma parte ({member}) que descompacta para mais de {limit // 2**20} MiB, o que "
                        "nenhuma planilha comum tem; não será lido. Abra-o no Excel e salve de novo, ou salve como CSV."
                    )
                if total > limit:
                    raise refuse(
                        f"A planilha descompacta para mais de {limit // 2**20} MiB; salve-a como CSV."
                    )
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileRefused):
            raise
        raise refuse(f"O arquivo XLSX está corrompido ({member}: {exc}).") from None


def normalize_encoding(name: str) -> str:
    key = (name or "").strip().lower().replace("_", "-")
    if key not in ENCODINGS:
        raise ValidationFailed(
            f"Codificação desconhecida {name!r}; use utf-8, latin-1, cp1252 ou utf-16.",
            errors=[{"field": "encoding", "message": "codificação desconhecida"}],
        )
    return ENCODINGS[key]


def detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _decode_sample(head: bytes, encoding: str, *, at_eof: bool) -> str:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        return decoder.decode(head, final=at_eof)
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise _encoding_error(encoding, head[exc.start : exc.start + 1], line) from None


def _encoding_error(encoding: str, bad: bytes, line: int) -> FileRefused:
    label = ENCODING_LABELS.get(encoding, encoding)
    hint = (
        " O arquivo parece ser Latin-1/Windows-1252: escolha essa codificação."
        if encoding.startswith("utf-8")
        else ""
    )
    return refuse(f"Linha {line}: o byte 0x{bad.hex().upper()} não é {label} válido.{hint}", line=line)


def _records(text: str, separator: str, quote: str, limit: int) -> list[list[str]]:
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=separator,
        quotechar=quote or '"',
        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
    )
    rows = []
    try:
        for row in reader:
            rows.append(row)
            if len(rows) >= limit:
                break
    except csv.Error:
        pass
    return rows


def detect_separator(text: str, quote: str = '"') -> str:
    lines = [line for line in text.splitlines()[:60] if line.strip()]
    if not lines:
        return ";"
    sample = "\n".join(lines)
    best, best_score = ";", (-1, -1.0)
    for sep in SEPARATORS:
        rows = _records(sample, sep, quote, 50)
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:-1] if len(rows) > 2 else rows[1:]  # the last line of a sample may be cut
        consistent = sum(1 for r in body if len(r) == width) / len(body) if body else 1.0
        score = (1 if consistent >= 0.8 else 0, consistent * 100 + min(width, 50))
        if score > best_score:
            best, best_score = sep, score
    return best


_COMMA_NUMBER = re.compile(r"^[+-]?(R\$\s?)?\d{1,3}(\.\d{3})*,\d+$|^[+-]?\d+,\d+$")
_DOT_NUMBER = re.compile(r"^[+-]?\d+\.\d+$|^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def detect_decimal_comma(rows: list[list[str]], separator: str) -> bool:
    comma = dot = 0
    for row in rows:
        for cell in row:
            cell = cell.strip()
            if _COMMA_NUMBER.match(cell):
                comma += 1
            elif _DOT_NUMBER.match(cell):
                dot += 1
    if comma or dot:
        return comma >= dot
    return separator != ","


def header_names(raw: list[str]) -> tuple[list[str], list[str]]:
    """Trimmed header names (``Coluna N`` for blank ones) and warnings about duplicates."""
    names = [(cell or "").strip().lstrip("\ufeff").strip() or f"Coluna {i + 1}" for i, cell in enumerate(raw)]
    seen: dict[str, int] = {}
    warnings = []
    for i, name in enumerate(names):
        if name in seen:
            warnings.append(
                f"As colunas {seen[name] + 1} e {i + 1} têm o mesmo nome {name!r}; "
                "renomeie uma delas se for usá-la."
            )
        else:
            seen[name] = i
    return names, warnings


def normalize_name(name: str) -> str:
    """Header names compared without accents, case, spaces and punctuation (``Data/Hora`` = ``datahora``)."""
    decomposed = unicodedata.normalize("NFKD", name)
    return re.sub(r"[^a-z0-9]", "", "".join(c for c in decomposed if not unicodedata.combining(c)).lower())


@dataclass
class CsvFormat:
    encoding: str
    separator: str
    quote: str = '"'
    decimal_comma: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "separator": self.separator,
            "quote": self.quote,
            "decimal": "," if self.decimal_comma else ".",
        }


@dataclass
class Detected:
    """What a first look at a file found: its format, header and first rows, as the preview shows them."""

    file_type: str
    headers: list[str]
    rows: list[list[str]]
    format: CsvFormat | None = None
    sheet: str | None = None
    sheets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decimal_comma: bool = True


def detect_csv(
    path: str | Path,
    *,
    encoding: str | None = None,
    separator: str | None = None,
    decimal: str | None = None,
    quote: str | None = None,
) -> Detected:
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
        at_eof = not f.read(1)
    if not head.strip(b"\xef\xbb\xbf \r\n\t"):
        raise refuse("O arquivo está vazio.")
    sniff_file_type(head)
    enc = normalize_encoding(encoding) if encoding else detect_encoding(head)
    text = _decode_sample(head, enc, at_eof=at_eof).lstrip("\ufeff")
    if "\n" not in text and "\r" in text:
        text = text.replace("\r", "\n")
    quote_char = '"' if quote is None else quote
    if quote_char not in ('"', ""):
        raise ValidationFailed(
            "Aspas: use '\"' ou nenhuma.", errors=[{"field": "quote", "message": "inválido"}]
        )
    if separator is not None and separator not in SEPARATORS:
        raise ValidationFailed(
            "Separador: use ';', ',', tabulação ou '|'.",
            errors=[{"field": "separator", "message": "separador inválido"}],
        )
    sep = separator or detect_separator(text, quote_char)
    first_break = text.find("\n")
    if (first_break < 0 and not at_eof) or first_break > MAX_HEADER_BYTES:
        raise refuse(
            f"A primeira linha (cabeçalho) passa de {MAX_HEADER_BYTES // 1024} KiB sem quebra de linha: "
            "o arquivo não parece um CSV.",
            line=1,
        )
    complete = text if at_eof else text[: text.rfind("\n") + 1]
    rows = _records(complete, sep, quote_char, PREVIEW_ROWS + 1)
    if not rows:
        raise refuse("O arquivo está vazio.")
    headers, warnings = header_names(rows[0])
    data_rows = [r for r in rows[1:] if any(c.strip() for c in r)]
    if decimal not in (None, ",", "."):
        raise ValidationFailed(
            "Separador decimal: use ',' ou '.'.", errors=[{"field": "decimal", "message": "inválido"}]
        )
    decimal_comma = detect_decimal_comma(data_rows, sep) if decimal is None else decimal == ","
    fmt = CsvFormat(encoding=enc, separator=sep, quote=quote_char, decimal_comma=decimal_comma)
    return Detected(
        "csv", headers, data_rows[:PREVIEW_ROWS], format=fmt, warnings=warnings, decimal_comma=decimal_comma
    )


# CSV in record-aligned chunks -----------------------------------------------------------------------------


@dataclass
class RawBatch:
    """Rows of one chunk as text cells ``c0..cN`` plus their line numbers and field counts."""

    frame: pl.DataFrame
    lines: np.ndarray
    field_counts: np.ndarray | None
    bytes_done: int
    blank_lines: int = 0


class CsvSource:
    """Iterates a CSV file as ``RawBatch`` es of about ``chunk_bytes`` each (header consumed first)."""

    def __init__(
        self,
        path: str | Path,
        fmt: CsvFormat,
        *,
        chunk_bytes: int | None = None,
        max_record_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.fmt = fmt
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.max_record_bytes = max(max_record_bytes or MAX_RECORD_BYTES, self.chunk_bytes)
        self.size = self.path.stat().st_size
        self.headers: list[str] = []
        self.header_warnings: list[str] = []
        self._sep = fmt.separator.encode()
        self._quote = fmt.quote.encode() if fmt.quote else b""

    # raw blocks as UTF-8 bytes, with the number of file bytes consumed so far
    def _blocks(self) -> Iterator[tuple[bytes, int]]:
        enc = self.fmt.encoding
        with open(self.path, "rb") as f:
            cr_only = None  # lines ended by CR alone (old Mac files): read as LF, decided on the first block
            if enc in ("utf-8", "utf-8-sig"):
                first = True
                while block := f.read(self.chunk_bytes):
                    if first and block.startswith(codecs.BOM_UTF8):
                        block = block[3:]
                    first = False
                    if cr_only is None and block:
                        cr_only = b"\n" not in block and b"\r" in block
                    yield (block.replace(b"\r", b"\n") if cr_only else block), f.tell()
                return
            decoder = codecs.getincrementaldecoder(enc)()
            offset = 0
            while True:
                block = f.read(self.chunk_bytes)
                final = not block
                try:
                    text = decoder.decode(block, final=final)
                except UnicodeDecodeError as exc:  # only UTF-16 can fail here; 8-bit codecs map every byte
                    raise refuse(
                        f"Byte inválido para {ENCODING_LABELS.get(enc, enc)} perto do byte "
                        f"{offset + exc.start}."
                    ) from None
                offset += len(block)
                if cr_only is None and text:
                    cr_only = "\n" not in text and "\r" in text
                if cr_only:
                    text = text.replace("\r", "\n")
                if text:
                    yield text.encode("utf-8"), f.tell()
                if final:
                    return

    def _last_boundary(self, buf: bytes) -> int:
        p = buf.rfind(b"\n")
        if p < 0:
            return 0
        if not self._quote:
            return p + 1
        quotes = buf.count(self._quote, 0, p)
        while quotes % 2:
            previous = buf.rfind(b"\n", 0, p)
            if previous < 0:
                return 0
            quotes -= buf.count(self._quote, previous, p)
            p = previous
        return p + 1

    def segments(self) -> Iterator[tuple[bytes, int, bool]]:
        """Record-aligned pieces of the file as (utf-8 bytes, file bytes consumed, is_last)."""
        buf = b""
        done = 0
        for block, consumed in self._blocks():
            buf = buf + block if buf else block
            done = consumed
            cut = self._last_boundary(buf)
            if cut == 0:
                if len(buf) > self.max_record_bytes:
                    raise _RecordTooLong(len(buf))
                continue
            yield buf[:cut], done, False
            buf = buf[cut:]
        yield buf, done, True

    def batches(self) -> Iterator[RawBatch]:
        line = 1
        header_done = False
        blank_total = 0
        try:
            for segment, done, last in self.segments():
                if not segment:
                    continue
                if last and self._quote and segment.count(self._quote) % 2:
                    raise refuse(
                        f"Linha {line + self._unclosed_offset(segment)}: aspas não fechadas — um "
                        "campo entre aspas vai até o fim do arquivo.",
                        line=line,
                    )
                self._check_utf8(segment, line)
                if not header_done:
                    segment, line = self._take_header(segment, line)
                    header_done = True
                    if not segment:
                        continue
                batch, line = self._parse(segment, line, done)
                blank_total += batch.blank_lines
                yield batch
        except _RecordTooLong as exc:
            raise refuse(
                f"Linha {line}: um registro passa de {exc.size // 2**20} MiB sem terminar — aspas "
                "não fechadas ou um arquivo sem quebras de linha.",
                line=line,
            ) from None
        if not header_done:
            raise refuse("O arquivo está vazio.")

    def _unclosed_offset(self, segment: bytes) -> int:
        # The unclosed field starts in the record after the last newline with an even quote count before it.
        return segment[: self._last_boundary(segment)].count(b"\n")

    def _check_utf8(self, segment: bytes, line: int) -> None:
        if segment.isascii():
            return
        try:
            segment.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_line = line + segment[: exc.start].count(b"\n")
            raise _encoding_error(self.fmt.encoding, segment[exc.start : exc.start + 1], bad_line) from None

    def _take_header(self, segment: bytes, line: int) -> tuple[bytes, int]:
        end = self._last_boundary_first(segment)
        header_bytes = segment[:end]
        if len(header_bytes) > MAX_HEADER_BYTES:
            raise refuse(f"O cabeçalho passa de {MAX_HEADER_BYTES // 1024} KiB.", line=1)
        text = header_bytes.decode("utf-8").rstrip("\r\n")
        rows = _records(text, self.fmt.separator, self.fmt.quote, 1)
        if not rows or not any(c.strip() for c in rows[0]):
            raise refuse("A primeira linha (cabeçalho) está vazia.", line=1)
        self.headers, self.header_warnings = header_names(rows[0])
        return segment[end:], line + header_bytes.count(b"\n")

    def _last_boundary_first(self, segment: bytes) -> int:
        """End of the first record (after its newline)."""
        pos = 0
        while True:
            p = segment.find(b"\n", pos)
            if p < 0:
                return len(segment)
            if not self._quote or segment.count(self._quote, 0, p) % 2 == 0:
                return p + 1
            pos = p + 1

    def _structure(self, segment: bytes, line: int) -> dict[str, Any]:
        """Per record: start line, end offset, field count, blank flag; and the segment's newline count."""
        arr = np.frombuffer(segment, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        is_sep = arr == self._sep[0]
        ends = newlines
        if self._quote and segment.find(self._quote) >= 0:
            quotes = np.flatnonzero(arr == self._quote[0])
            ends = newlines[(np.searchsorted(quotes, newlines) & 1) == 0]
            seps = np.flatnonzero(is_sep)
            is_sep[seps[(np.searchsorted(quotes, seps) & 1) == 1]] = False  # separators inside quotes
        if not ends.size or ends[-1] != len(segment) - 1:
            ends = np.append(ends, len(segment))  # the last record of the file may lack its newline
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts
        counts = np.ones(len(ends), dtype=np.int64)
        nonempty = lengths > 0
        if nonempty.any():
            counts[nonempty] += np.add.reduceat(is_sep.view(np.uint8), starts[nonempty], dtype=np.int32)
        cr = np.zeros(len(ends), dtype=bool)
        cr[nonempty] = arr[ends[nonempty] - 1] == 13
        blank = (lengths == 0) | ((lengths == 1) & cr)
        if len(ends) == len(newlines) or (len(ends) == len(newlines) + 1 and ends[-1] == len(segment)):
            lines = line + np.arange(len(ends), dtype=np.int64)  # no newline inside quotes
        else:
            lines = line + np.searchsorted(newlines, starts)
        return {"lines": lines, "ends": ends, "counts": counts, "blank": blank, "newlines": len(newlines)}

    def _read(self, piece: bytes) -> pl.DataFrame:
        schema = {f"c{i}": pl.String for i in range(len(self.headers))}
        return pl.read_csv(
            piece,
            has_header=False,
            separator=self.fmt.separator,
            quote_char=self.fmt.quote or None,
            schema=schema,
            truncate_ragged_lines=True,
            missing_columns="insert",
            extra_columns="ignore",  # a record with more fields than the header is rejected by its field count
            empty_string_is_null=False,
            raise_if_empty=False,
        )

    def _parse(self, segment: bytes, line: int, done: int) -> tuple[RawBatch, int]:
        info = self._structure(segment, line)
        lines, blank = info["lines"], info["blank"]
        try:
            frame: pl.DataFrame | None = self._read(segment)
        except pl.exceptions.PolarsError:
            frame = None
        if frame is None or frame.height != len(lines):
            bad = self._first_bad_record(segment, info)
            raise refuse(
                f"Linha {bad}: aspas mal formadas — um campo entre aspas precisa terminar com aspas "
                'antes do separador, e aspas dentro dele são escritas em dobro (""). Se o arquivo '
                "não usa aspas, escolha a opção sem aspas.",
                line=bad,
            )
        keep = ~blank
        if not keep.all():
            frame = frame.filter(pl.Series(keep))
        batch = RawBatch(
            frame=frame,
            lines=lines[keep],
            field_counts=info["counts"][keep],
            bytes_done=done,
            blank_lines=int(blank.sum()),
        )
        return batch, line + info["newlines"]

    def _first_bad_record(self, segment: bytes, info: dict[str, Any]) -> int:
        """Bisect on record prefixes for the first record polars cannot parse."""
        ends, lines = info["ends"], info["lines"]

        def parses(k: int) -> bool:
            try:
                return self._read(segment[: int(ends[k - 1]) + 1]).height == k
            except pl.exceptions.PolarsError:
                return False

        good, bad = 0, len(lines)  # prefixes of `good` records parse; of `bad` records do not
        while bad - good > 1:
            mid = (good + bad) // 2
            if parses(mid):
                good = mid
            else:
                bad = mid
        return int(lines[bad - 1])


class _RecordTooLong(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


# XLSX ----------------------------------------------------------------------------------------------------


def xlsx_sheets(path: str | Path) -> list[str]:
    import fastexcel

    check_xlsx(path)
    try:
        return list(fastexcel.read_excel(str(path)).sheet_names)
    except Exception as exc:  # fastexcel raises its own error classes for corrupt workbooks
        raise refuse(f"Não foi possível abrir o XLSX: {exc}") from None


_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')


def _column_number(letters: bytes) -> int:
    number = 0
    for ch in letters:
        number = number * 26 + (ch - 64)
    return number


def _sheet_dimension(path: str | Path, sheet_index: int) -> tuple[int, int] | None:
    """(first row, cell count) from the sheet's <dimension>, read from the first bytes of its XML."""
    member = f"xl/worksheets/sheet{sheet_index + 1}.xml"
    with zipfile.ZipFile(path) as zf:
        if member not in zf.namelist():
            return None
        with zf.open(member) as stream:
            head = stream.read(4096)
    m = _DIMENSION.search(head)
    if not m:
        return None
    first_row = int(m.group(2))
    if not m.group(3):
        return first_row, 1
    rows = int(m.group(4)) - first_row + 1
    cols = _column_number(m.group(3)) - _column_number(m.group(1)) + 1
    return first_row, rows * cols


class XlsxSource:
    """One sheet of a workbook, as typed polars columns (read whole: capped by ``XLSX_MAX_CELLS``)."""

    def __init__(self, path: str | Path, sheet: str | None = None) -> None:
        import fastexcel

        self.path = Path(path)
        self.size = self.path.stat().st_size
        sheets = xlsx_sheets(path)
        if not sheets:
            raise refuse("O XLSX não tem planilhas.")
        if sheet is None or sheet == "":
            self.sheet = sheets[0]
        elif sheet in sheets:
            self.sheet = sheet
        else:
            raise refuse(
                f"A planilha {sheet!r} não existe; planilhas do arquivo: {', '.join(sheets)}.", column="sheet"
            )
        self.sheets = sheets
        index = sheets.index(self.sheet)
        dimension = _sheet_dimension(path, index)
        self.first_row = dimension[0] if dimension else 1
        if dimension and dimension[1] > XLSX_MAX_CELLS:
            raise refuse(
                f"A planilha {self.sheet!r} tem {format_int(dimension[1])} células; o limite para XLSX é "
                f"{format_int(XLSX_MAX_CELLS)} (a planilha inteira precisa caber na memória). Salve-a como "
                "CSV, que é lido em partes e não tem limite de tamanho."
            )
        try:
            self._reader = fastexcel.read_excel(str(path))
            self._sheet = self._reader.load_sheet(
                self.sheet, schema_sample_rows=None, dtype_coercion="coerce"
            )
            self.frame = self._sheet.to_polars()
        except FileRefused:
            raise
        except Exception as exc:
            raise refuse(f"Não foi possível ler a planilha {self.sheet!r}: {exc}") from None
        self.headers, self.header_warnings = header_names(self._header_cells(list(self.frame.columns)))
        self.frame.columns = [f"c{i}" for i in range(self.frame.width)]

    def _header_cells(self, names: list[str]) -> list[str]:
        """The header as the sheet has it. fastexcel renames a repeated "Sensor" to "Sensor_1", which would hide
        the repetition (and import one of the two silently): when a name looks renamed, its cell is read again."""
        if not any(_RENAMED.match(name) for name in names):
            return names
        row = self._reader.load_sheet(self.sheet, header_row=None, n_rows=1).to_polars().row(0)
        cells = ["" if value is None else str(value) for value in row]
        return [
            match[1] if (match := _RENAMED.match(name)) and i < len(cells) and cells[i] == match[1] else name
            for i, name in enumerate(names)
        ]

    def reload_column(self, index: int, dtype: str) -> pl.Series:
        """Column ``index`` read again with a forced type (``float``, ``datetime``): cells of other types
        come back null, so a mixed column can be split into typed cells and text cells."""
        sheet = self._reader.load_sheet(self.sheet, use_columns=[index], dtypes={index: dtype})
        return sheet.to_polars().to_series(0)

    def batches(self) -> Iterator[RawBatch]:
        if self.frame.height == 0:
            raise refuse("A planilha só tem o cabeçalho; nenhuma linha de dados.")
        lines = np.arange(self.first_row + 1, self.first_row + 1 + self.frame.height, dtype=np.int64)
        empty = self.frame.select(pl.all_horizontal(pl.all().is_null())).to_series().to_numpy()
        keep = ~empty
        frame = self.frame.filter(pl.Series(keep)) if not keep.all() else self.frame
        yield RawBatch(
            frame=frame,
            lines=lines[keep],
            field_counts=None,
            bytes_done=self.size,
            blank_lines=int(empty.sum()),
        )


def detect_xlsx(path: str | Path, *, sheet: str | None = None) -> Detected:
    source = XlsxSource(path, sheet)
    head = source.frame.head(PREVIEW_ROWS)
    rows = [["" if v is None else str(v) for v in row] for row in head.iter_rows()]
    return Detected(
        "xlsx",
        source.headers,
        rows,
        sheet=source.sheet,
        sheets=source.sheets,
        warnings=source.header_warnings,
        decimal_comma=True,
    )
