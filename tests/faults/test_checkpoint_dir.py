"""A --checkpoint-dir that is a file, or lies under one, is refused before anything is written."""

import pytest


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("notes.txt", "--checkpoint-dir notes.txt is not a folder"),
        ("notes.txt/ckpt", "--checkpoint-dir notes.txt/ckpt: notes.txt is a file, not a folder"),
    ],
)
def test_checkpoint_dir_that_is_a_file_is_refused(workdir, refused, where, message):
    (workdir / "notes.txt").write_text("not a folder\n")
    refused(["run", "cnn", "--dataset", "digits", "--checkpoint-dir", where], message)
    assert (workdir / "notes.txt").read_text() == "not a folder\n"
