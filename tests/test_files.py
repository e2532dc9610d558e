"""minicraft.files: a file is whole or absent, with the permissions a plain open() would give it."""
import os
import stat

import pytest

from minicraft.files import atomic_write, write_text_atomic


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_new_file_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = write_text_atomic(tmp_path / "fresh.txt", "one")
        assert mode(fresh) == 0o644 and fresh.read_text() == "one"
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o600)
        write_text_atomic(kept, "new")
        assert mode(kept) == 0o600 and kept.read_text() == "new"
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"finished")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as f:
            f.write(b"half")
            raise KeyboardInterrupt                 # Ctrl-C half-way
    assert path.read_bytes() == b"finished" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
