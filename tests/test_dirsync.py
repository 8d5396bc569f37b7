"""appliance.dirsync: new directories and the store's file are synced into their parents, so a
crash right after `runlog init` (or an anchor's first publish) cannot lose them."""

import stat

import pytest

from appliance import dirsync, keyfile, service
from appliance.dirsync import make_directory
from appliance.settings import Settings


@pytest.fixture
def synced(monkeypatch):
    seen: list = []
    real = dirsync.fsync_directory

    def spy(directory):
        seen.append(directory)
        real(directory)

    for module in (dirsync, keyfile, service):
        monkeypatch.setattr(module, "fsync_directory", spy)
    return seen


def test_make_directory_syncs_each_new_directory_into_its_parent(tmp_path, synced):
    make_directory(tmp_path / "a" / "b" / "c", mode=0o700)
    assert synced == [tmp_path, tmp_path / "a", tmp_path / "a" / "b"]
    assert stat.S_IMODE((tmp_path / "a" / "b" / "c").stat().st_mode) == 0o700


def test_make_directory_leaves_existing_directories_alone(tmp_path, synced):
    (tmp_path / "a").mkdir()
    make_directory(tmp_path / "a")
    assert synced == []
    make_directory(tmp_path / "a" / "b")
    assert synced == [tmp_path / "a"]


def test_make_directory_over_a_file_fails_without_syncing(tmp_path, synced):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        make_directory(tmp_path / "file")
    assert synced == []


def test_init_syncs_the_new_data_directory_keys_directory_and_store(tmp_path, synced):
    data = tmp_path / "srv" / "data"
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(data)})
    assert service.init_appliance(settings).created_store
    keys = settings.keys_dir
    assert keys.parent == data  # the default layout
    # srv and data into their parents; keys into data; the key files into keys (appliance.keyfile); the store into data
    assert synced[:3] == [tmp_path, tmp_path / "srv", data]
    assert synced[-1] == data and set(synced[3:-1]) == {keys}
    synced.clear()
    assert not service.init_appliance(settings).created_store
    assert synced == [], "a second start creates nothing and syncs nothing"
