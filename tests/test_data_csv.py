"""CSV tables (bpnn.data.read_csv): header detection, dialects, the target column, and
errors that name the line, the column and the file."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn.data
import bpnn.experiment
from bpnn.data import read_csv


def test_read_csv_lives_in_data_and_the_study_path_still_imports_it():
    assert bpnn.experiment.read_csv is read_csv
    from bpnn.data.csv import read_csv as same

    assert same is read_csv


def test_header_row_and_default_target_is_the_last_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2.5,x\n3,-4e-1,y\n\n")
    X, y_raw, features, target = read_csv(path)          # a Path works as well as a str
    np.testing.assert_array_equal(X, np.array([[1, 2.5], [3, -0.4]], np.float32))
    assert X.dtype == np.float32
    assert y_raw == ["x", "y"] and features == ["a", "b"] and target == "label"


def test_without_a_header_columns_are_numbered_and_semicolons_are_sniffed(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1;2;3\n4;5;6\n7;8;9\n")
    X, y_raw, features, target = read_csv(str(path), target=0)
    np.testing.assert_array_equal(X, [[2, 3], [5, 6], [8, 9]])
    assert y_raw == ["1", "4", "7"] and features == ["column 1", "column 2"] and target == "column 0"


def test_errors_name_what_is_wrong(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    with pytest.raises(ValueError, match=r"line 3, column 'b'.*'oops'"):
        read_csv(path)
    with pytest.raises(ValueError, match=r"target: column index 7 is out of range 0..2"):
        read_csv(path, target=7)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(ValueError, match="line 3 of .* has 2 cells, expected 3"):
        read_csv(ragged)
    short = tmp_path / "short.csv"
    short.write_text("a,b\n")
    with pytest.raises(ValueError, match="fewer than two rows"):
        read_csv(short)


@pytest.mark.parametrize("encoding,hint", [("latin-1", "byte 0xe9 at offset"), ("utf-16", "UTF-16 byte-order mark")])
def test_a_file_that_is_not_utf8_gets_an_error_naming_it(tmp_path, encoding, hint):
    path = tmp_path / "table.csv"
    path.write_bytes("café,b,label\n1,2,x\n3,4,y\n".encode(encoding))
    with pytest.raises(ValueError) as info:
        read_csv(path)
    message = str(info.value)
    assert message.startswith(f"data: {str(path)!r} is not UTF-8 text (") and hint in message, message
    assert "save it as UTF-8" in message


def test_utf16_without_a_byte_order_mark_gets_an_error_naming_the_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes("a,b,label\n1,2,x\n3,4,y\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match="cannot be read as CSV") as info:
        read_csv(path)
    assert str(path) in str(info.value)


def test_the_cli_reports_a_latin1_csv_in_one_line(tmp_path, capsys):
    from bpnn.cli import main

    path = tmp_path / "table.csv"
    path.write_bytes("café,b,label\n1,2,x\n3,4,y\n".encode("latin-1"))
    assert main(["compare", "--data", str(path), "--epochs", "1", "--n-seeds", "1", "--no-report",
                 "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bpnn: error:")]
    assert len(err) == 1 and err[0].startswith("bpnn: error: data:") and str(path) in err[0], err
    assert "is not UTF-8 text" in err[0]
