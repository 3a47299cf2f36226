"""Archives and weights files from elsewhere (docs/reliability.md, rows 19-20).

Every archive that ``Speech2Emotion.from_pretrained`` or ``--pretrained_asr`` opens is
checked before anything is written: ``..`` entries, absolute paths, links, device files and
archives that expand past the size limit are refused with an error naming the archive and
the entry, and nothing lands outside the cache (nor inside it). A weights file that a user
passes (``--init_param``, a packed model's ``.pth``) must load with ``weights_only=True``:
one whose pickle would run code is refused before it runs. A good packed model still opens,
as a zip and as a tarball, with its config's file names pointing at the extracted files.
"""

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from espnet2.tasks import abs_task
from espnet2.train.reporter import Reporter
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from espnet_asrser.model_zoo import PackedModelError, pack_asrser_model, unpack_asrser_model
from espnet_asrser.tasks.asrser import ASRSERTask
from espnet_asrser.train.checkpoint import load_checkpoint
from espnet_asrser.train.init_param import counted_init_param_loads
from espnet_asrser.utils import archive as archive_module
from espnet_asrser.utils.archive import MAX_BYTES_ENV, UnsafeArchiveError, extract_archive
from espnet_asrser.utils.weights_file import UntrustedWeightsError, load_weights

from test_reliability_inputs import tiny, train_cmd
from test_task import CONFIG, load_waves, print_config

META = yaml.safe_dump({"files": {"asrser_model_file": "model.pth"},
                       "yaml_files": {"asrser_train_config": "config.yaml"}})


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """The unpacking cache of these tests, below a directory that must stay empty but for it."""
    root = tmp_path / "home"
    monkeypatch.setenv("ESPNET_ASRSER_CACHE", str(root / "cache"))
    return root / "cache"


def leftovers(root: Path):
    """Every file under ``root``: an archive refused must leave none in the cache."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def packed_tar(path: Path, evil: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A tarball in the packed-model layout plus the entry ``evil``."""
    with tarfile.open(path, "w:gz") as tf:
        add_bytes(tf, "meta.yaml", META.encode())
        add_bytes(tf, "config.yaml", b"{}\n")
        tf.addfile(evil, io.BytesIO(data) if data else None)
    return path


# ----------------------------------------------------------------------------- row 19
def test_zip_slip_entry_is_refused_naming_it(tmp_path, cache):
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("meta.yaml", META)
        zf.writestr("../../EVIL_zip.txt", "pwned")
    with pytest.raises(PackedModelError, match=r"slip\.zip.*entry '\.\./\.\./EVIL_zip\.txt' "
                       r"has a '\.\.' component"):
        unpack_asrser_model(archive)
    assert not list(tmp_path.rglob("EVIL_zip.txt"))
    assert leftovers(cache) == []


@pytest.mark.parametrize("name", ["../../../../../../../EVIL_tar.txt", "files/../../EVIL_tar.txt"])
def test_tar_with_dotdot_entry_is_refused_naming_it(tmp_path, cache, name):
    info = tarfile.TarInfo(name)
    info.size = 5
    archive = packed_tar(tmp_path / "dotdot.tar.gz", info, b"pwned")
    with pytest.raises(PackedModelError, match=rf"dotdot\.tar\.gz.*entry '{name}' has a"):
        Speech2Emotion.from_pretrained(str(archive))
    assert not list(tmp_path.parent.rglob("EVIL_tar.txt"))
    assert leftovers(cache) == []


def test_tar_with_absolute_path_is_refused_naming_it(tmp_path, cache):
    target = tmp_path / "outside" / "EVIL_abs.txt"
    info = tarfile.TarInfo(str(target))
    info.size = 5
    archive = packed_tar(tmp_path / "abs.tar.gz", info, b"pwned")
    with pytest.raises(PackedModelError, match=r"has an absolute path"):
        unpack_asrser_model(archive)
    assert not target.exists() and leftovers(cache) == []


def test_tar_with_symlink_out_is_refused_before_writing_through_it(tmp_path, cache):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        add_bytes(tf, "meta.yaml", META.encode())
        link = tarfile.TarInfo("files")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tf.addfile(link)
        add_bytes(tf, "files/EVIL_link.txt", b"pwned")  # written through the link
    with pytest.raises(PackedModelError, match=rf"entry 'files' is a symbolic link to {outside}"):
        unpack_asrser_model(archive)
    assert list(outside.iterdir()) == [] and leftovers(cache) == []


@pytest.mark.parametrize("kind", ["hardlink", "fifo", "chardev"])
def test_tar_with_link_or_device_entry_is_refused(tmp_path, cache, kind):
    info = tarfile.TarInfo("model.pth")
    if kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    else:
        info.type = tarfile.FIFOTYPE if kind == "fifo" else tarfile.CHRTYPE
    archive = packed_tar(tmp_path / f"{kind}.tar", info)
    what = {"hardlink": "a hard link to /etc/passwd", "fifo": "a fifo", "chardev": "a device file"}
    with pytest.raises(PackedModelError, match=f"entry 'model.pth' is {what[kind]}"):
        unpack_asrser_model(archive)
    assert leftovers(cache) == []


def test_zip_with_symlink_entry_is_refused(tmp_path, cache):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("meta.yaml", META)
        info = zipfile.ZipInfo("model.pth")
        info.external_attr = (0o120777 << 16)  # S_IFLNK, as `zip --symlinks` writes it
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(PackedModelError, match=r"entry 'model.pth' is a symbolic link"):
        unpack_asrser_model(archive)
    assert leftovers(cache) == []


def zip_bomb(path: Path, n_bytes: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.yaml", META)
        zf.writestr("model.pth", b"\0" * n_bytes)
    return path


def test_zip_bomb_is_refused_from_its_declared_size(tmp_path, cache, monkeypatch):
    archive = zip_bomb(tmp_path / "bomb.zip", 4 << 20)  # 4 MiB of zeros, ~4 KB on disk
    assert archive.stat().st_size < 20_000
    monkeypatch.setenv(MAX_BYTES_ENV, "1MiB")
    with pytest.raises(PackedModelError, match=rf"bomb\.zip: the archive declares \d+ bytes "
                       rf"uncompressed, more than the limit of 1048576 bytes .*{MAX_BYTES_ENV}"):
        Speech2Emotion.from_pretrained(str(archive))
    assert leftovers(cache) == []


def test_size_bound_holds_while_extracting_when_headers_lie(tmp_path, monkeypatch):
    # zipfile itself stops at the declared size; the count while writing is the bound that
    # does not depend on that: seen here with a check that believed headers declaring 0.
    archive = zip_bomb(tmp_path / "liar.zip", 3 << 20)
    believed = archive_module.check_archive

    def lying_check(path, limit=None):
        return [m._replace(size=0) for m in believed(path, 1 << 40)]

    monkeypatch.setattr(archive_module, "check_archive", lying_check)
    with pytest.raises(UnsafeArchiveError, match=r"liar\.zip: the archive expands past its "
                       r"declared sizes to more than \d+ bytes"):
        extract_archive(archive, tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "out").exists()


def test_limit_from_the_environment_must_be_a_size(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(PackedModelError, match=rf"{MAX_BYTES_ENV}='lots': not a size"):
        unpack_asrser_model(zip_bomb(tmp_path / "x.zip", 10))


def test_meta_yaml_naming_a_path_outside_is_refused(tmp_path, cache):
    outside = tmp_path / "victim.yaml"
    outside.write_text("keep: me\n")
    archive = tmp_path / "meta.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("meta.yaml", yaml.safe_dump(
            {"files": {}, "yaml_files": {"asrser_train_config": "../../../victim.yaml"}}))
    with pytest.raises(PackedModelError, match=r"names '\.\./\.\./\.\./victim\.yaml'"):
        unpack_asrser_model(archive)
    assert outside.read_text() == "keep: me\n" and leftovers(cache) == []


# ----------------------------------------------------------------------------- row 20
class RunsCode:
    """Unpickling this creates ``marker``: what a malicious checkpoint could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil_pth(tmp_path):
    d = tiny(tmp_path / "data")
    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(CONFIG), "--mode", "asrser", "--token_list", str(d["token_list"])])
    state = ASRSERTask.build_model(args).state_dict()
    path = tmp_path / "evil.pth"
    torch.save({**state, "extra": RunsCode(tmp_path / "CODE_RAN")}, path)
    return {"path": path, "marker": tmp_path / "CODE_RAN", "data": d, "args": args}


def test_init_param_whose_pickle_runs_code_is_refused_before_it_runs(evil_pth, tmp_path):
    cmd = train_cmd(evil_pth["data"], tmp_path / "exp", "--init_param", str(evil_pth["path"]))
    with pytest.raises(UntrustedWeightsError, match=(
            rf"(?s)--init_param {evil_pth['path']} holds Python objects besides tensors "
            r"\(it needs (io|builtins)\.open\): loading it would run code stored in the file, so it is refused.*keep only its tensors.*"
            r"weights_only=False")):
        ASRSERTask.main(cmd=cmd)
    assert not evil_pth["marker"].exists()
    assert not (tmp_path / "exp" / "1epoch.pth").exists()


def test_espnet_loader_alone_would_run_it(evil_pth):
    # Why the check exists: the same file through ESPnet's --init_param loader, unwrapped.
    model = ASRSERTask.build_model(evil_pth["args"])
    try:
        abs_task.load_pretrained_model(str(evil_pth["path"]), model, ignore_init_mismatch=True)
    except Exception:
        pass  # the "extra" key; the code has run by then
    assert evil_pth["marker"].exists()
    evil_pth["marker"].unlink()
    with counted_init_param_loads(), pytest.raises(UntrustedWeightsError):
        abs_task.load_pretrained_model(str(evil_pth["path"]), model)
    assert not evil_pth["marker"].exists()


def test_packed_model_whose_pickle_runs_code_is_refused(evil_pth, tmp_path, cache):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("meta.yaml", META)
        zf.writestr("config.yaml", "{}\n")
        zf.write(evil_pth["path"], "model.pth")
    with pytest.raises(UntrustedWeightsError, match=r"evil\.zip: the model file .*model\.pth "
                       r"holds Python objects besides tensors"):
        Speech2Emotion.from_pretrained(str(archive))
    assert not evil_pth["marker"].exists() and leftovers(cache) == []


def test_model_file_whose_pickle_runs_code_is_refused(evil_pth, tmp_path):
    # Speech2Emotion(config, model) and asrser_inference --asrser_model_file: ESPnet's
    # build_model_from_file would unpickle it fully; ours checks it first.
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**vars(evil_pth["args"]), "token_list": None}))
    with pytest.raises(UntrustedWeightsError, match=r"model file .*evil\.pth holds Python"):
        ASRSERTask.build_model_from_file(config, evil_pth["path"])
    assert not evil_pth["marker"].exists()


def test_resume_checkpoint_needs_more_than_weights_only(tmp_path):
    # checkpoint.pth of the experiment being resumed is the one file loaded with
    # weights_only=False (docs/reliability.md, row 20): what ESPnet's Trainer writes there
    # does not load otherwise.
    model = torch.nn.Linear(2, 2)
    optim = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optim.step()
    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("train") as sub:
        sub.register({"loss": np.float64(0.5)}, weight=1)
        sub.next()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "reporter": reporter.state_dict(),
                "optimizers": [optim.state_dict()], "schedulers": [None], "scaler": None}, path)
    with pytest.raises(UntrustedWeightsError, match="checkpoint.pth holds Python objects"):
        load_weights(path, "resume checkpoint")
    assert load_checkpoint(path)["reporter"]["epoch"] == 1


# ----------------------------------------------------------------- a good archive still opens
@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_good_packed_model_opens_with_its_files_rewritten(tmp_path, cache, monkeypatch, suffix):
    d = tiny(tmp_path / "data")
    stats = tmp_path / "feats_stats.npz"
    np.savez(stats, count=np.array(10), sum=np.zeros(40), sum_square=np.full(40, 10.0))
    options = ["--config", str(CONFIG), "--mode", "asrser", "--token_list", str(d["token_list"]),
               "--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats}"]
    config = tmp_path / "exp" / "config.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(print_config(monkeypatch, *options)))
    torch.manual_seed(0)
    model_file = tmp_path / "exp" / "model.pth"
    torch.save(ASRSERTask.build_model(ASRSERTask.get_parser().parse_args(options)).state_dict(),
               model_file)
    archive = pack_asrser_model(config, model_file, tmp_path / f"asrser{suffix}")
    waves = load_waves(d, 2)
    direct = Speech2Emotion(config, model_file)(waves)
    stats.unlink()  # the archive is self-contained
    s2e = Speech2Emotion.from_pretrained(str(archive))
    assert s2e.args.normalize_conf["stats_file"].startswith(str(cache))
    for a, b in zip(direct, s2e(waves)):
        assert a.label == b.label and a.transcript == b.transcript
        assert np.allclose(list(a.posteriors.values()), list(b.posteriors.values()), atol=1e-6)
    # Opened again (a second process, a rerun): the same directory, no staging left.
    first = unpack_asrser_model(archive)
    assert unpack_asrser_model(archive) == first
    assert [p.name for p in cache.iterdir()] == [Path(first["asrser_model_file"]).parent.name]
