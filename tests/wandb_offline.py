"""Read an offline W&B run back: the history rows in its ``run-<id>.wandb`` file.

The file is W&B's 7-byte header (``:W&B``, magic, version) then a record log in 32 KiB blocks: each chunk
has a 4-byte checksum, a 2-byte little-endian length and a 1-byte type (1 whole, 2 first, 3 middle, 4 last); a
block's tail shorter than a chunk header is padding. Each record is a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def _payloads(data: bytes) -> list[bytes]:
    assert data[:4] == b":W&B", "not a W&B run file"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        body = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            out.append(body)
        elif kind == 2:
            pending = body
        elif kind == 3:
            pending += body
        elif kind == 4:
            out.append(pending + body)
        elif kind == 0 and length == 0:  # zero padding to the block's end
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
    return out


def history(run_dir: Path) -> list[dict]:
    """Every history row of the offline run in ``run_dir`` (``.../wandb/offline-run-...``), in order."""
    from wandb.proto import wandb_internal_pb2

    (path,) = Path(run_dir).glob("run-*.wandb")
    rows = []
    for payload in _payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key, value = item.key or "/".join(item.nested_key), json.loads(item.value_json)
                if isinstance(value, dict) and "_type" in value:
                    # A media item: W&B 0.16 writes it as one dict, later releases each field under key/field.
                    row.update({f"{key}/{field}": part for field, part in value.items()})
                else:
                    row[key] = value
            rows.append(row)
    return rows
