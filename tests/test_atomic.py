"""Atomic writes: whole files or none, usual permissions, no temp files left behind."""

import json
import os

import pytest

from fundiff.atomic import atomic_write_bytes, atomic_write_json


def test_write_creates_folders_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a" / "b" / "f.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails inside the write, after the temp file exists
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_json_is_sorted_indented_and_round_trips(tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"z": "x", "y": True}}
    atomic_write_json(tmp_path / "f.json", obj)
    text = (tmp_path / "f.json").read_text()
    assert json.loads(text) == obj
    assert text == json.dumps(obj, indent=2, sort_keys=True) + "\n" and text.index('"a"') < text.index('"b"')
