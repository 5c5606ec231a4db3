"""Corpus adapters on small native trees of real generated clips, each batch ingested for real."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from support import shared_data

from affectflow.config import Paths
from affectflow.datasets import (
    ADAPTERS,
    COMMON_OPTIONS,
    IMPORT_RECORD,
    crema_d,
    emodb,
    enterface,
    import_dataset,
    mafw,
    parse_mapping,
    ravdess,
)
from affectflow.ingest import ingest_batch, load_dataset
from affectflow.labels import EMOTIONS, affect_of
from affectflow.splits import speaker_folds
from affectflow.validation import full_suite, read_labels, suite_for, validate_batch

CONTRACT = ["path", "dataset", "speaker", "emotion", "intensity", "arousal", "valence"]


@pytest.fixture
def clip(make_clip):
    """``clip(root, "a/b.mp4", video=True, audio=True)``: a real 0.4 s 32x32 clip, each with its own tone."""
    tones = itertools.count(220, 37)

    def _clip(root: Path, relative: str, video: bool = True, audio: bool = True) -> Path:
        return make_clip(relative, seconds=0.4, size=(32, 32), video=video, audio=audio, folder=root,
                         freq=next(tones))
    return _clip


def check_contract(frame: pd.DataFrame, batch: Path, dataset: str) -> None:
    """Contract columns first, in order; [arousal, valence] from the table; labels.csv says the same."""
    assert list(frame.columns[:7]) == CONTRACT
    assert (frame["dataset"] == dataset).all() and (frame["intensity"] >= 0).all()
    for row in frame.itertuples():
        assert (row.arousal, row.valence) == pytest.approx(affect_of(row.emotion, row.intensity))
    written = read_labels(batch)
    assert list(written["path"]) == list(frame["path"]) and list(written["speaker"]) == list(frame["speaker"])
    assert all((batch / p).is_file() for p in frame["path"])


def accepted(batch: Path, home: Paths, n: int) -> pd.DataFrame:
    result = ingest_batch(batch, home)
    assert result.status == "accepted", result.report.read_text()
    assert (result.n_clips, result.n_new) == (n, n)
    return load_dataset(str(result.dataset), home)


def skipped(frame: pd.DataFrame) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in frame.attrs["import"]["skipped"]}


def test_crema_d_with_the_real_metadata(tmp_path: Path, clip, home: Paths) -> None:
    metadata = shared_data("crema-d")
    source = tmp_path / "CREMA-D"
    (source / "processedResults").mkdir(parents=True)
    for name in ("SentenceFilenames.csv", "VideoDemographics.csv"):
        (source / name).write_bytes((metadata / name).read_bytes())
    (source / "processedResults" / "summaryTable.csv").write_bytes((metadata / "summaryTable.csv").read_bytes())
    names = ["1001_IEO_HAP_LO", "1001_IEO_HAP_HI", "1001_DFA_ANG_XX", "1002_IEO_SAD_MD", "1003_TIE_NEU_XX",
             "1004_IWW_DIS_XX"]
    for name in names:
        clip(source, f"VideoFlash/{name}.flv")
    clip(source, "VideoFlash/1001_IEO_JOY_XX.flv")
    (source / "VideoFlash" / "Thumbs.db").write_bytes(b"\0")

    frame = import_dataset("crema-d", source, home.inbox / "crema", link=True)
    check_contract(frame, home.inbox / "crema", "crema-d")
    assert list(frame["path"]) == [f"VideoFlash/{n}.flv" for n in sorted(names)]
    votes = pd.read_csv(metadata / "summaryTable.csv", dtype=str).set_index("FileName")
    first = frame.set_index("path").loc["VideoFlash/1001_IEO_HAP_LO.flv"]
    assert first[["speaker", "emotion", "intensity", "level"]].tolist() == ["1001", "happiness", 0.5, "LO"]
    assert (first["arousal"], first["valence"]) == (0.35, 0.8)  # [arousal, valence]; LO halves arousal
    assert first["multimodal_vote"] == votes.at["1001_IEO_HAP_LO", "MultiModalVote"]
    assert first[["age", "sex", "race", "ethnicity"]].tolist() == ["51", "Male", "Caucasian", "Not Hispanic"]
    assert frame.set_index("path").loc["VideoFlash/1001_IEO_HAP_HI.flv", "intensity"] == 1.5
    for row in frame.itertuples():
        stem = Path(row.path).stem
        assert row.vote_agreement == crema_d.vote_agreement(row.emotion, votes.at[stem, "MultiModalVote"])
    assert skipped(frame) == {"VideoFlash/1001_IEO_JOY_XX.flv": "unknown emotion or level code JOY_XX",
                              "VideoFlash/Thumbs.db": "not a .flv file"}
    assert any("7436 clips listed in SentenceFilenames.csv" in n for n in frame.attrs["import"]["notes"])
    stored = accepted(home.inbox / "crema", home, len(names))
    assert sorted(stored["speaker"].unique()) == ["1001", "1002", "1003", "1004"]

    agreeing = import_dataset("crema-d", source, tmp_path / "agreeing", min_agreement=1.0)
    disagree = set(frame.loc[frame["vote_agreement"] < 1.0, "path"])
    assert disagree and set(agreeing["path"]) == set(frame["path"]) - disagree
    assert set(skipped(agreeing)) >= disagree


def test_crema_d_audio_without_metadata(tmp_path: Path, clip, home: Paths) -> None:
    source = tmp_path / "CREMA-D"
    for name in ("1010_ITS_FEA_MD", "1011_WSI_NEU_XX"):
        clip(source, f"AudioWAV/{name}.wav", video=False)
    frame = import_dataset("crema-d", source, home.inbox / "audio", modality="audio")
    check_contract(frame, home.inbox / "audio", "crema-d")
    assert list(frame["emotion"]) == ["fear", "neutral"] and frame["vote_agreement"].isna().all()
    accepted(home.inbox / "audio", home, 2)
    with pytest.raises(ValueError, match="min_agreement needs summaryTable.csv"):
        import_dataset("crema-d", source, tmp_path / "x", modality="audio", min_agreement=0.5)
    with pytest.raises(FileNotFoundError, match="VideoFlash"):
        import_dataset("crema-d", source, tmp_path / "x")


def test_enterface_regular_and_irregular_folders(tmp_path: Path, clip, home: Paths) -> None:
    source = tmp_path / "enterface database"
    regular = ["subject 1/anger/sentence 1/s1_an_1.avi", "subject 2/happiness/sentence 3/s2_ha_3.avi",
               "subject 5/disgust/sentence 5/s5_di_5.avi"]
    irregular = ["subject 6/fear/s6_fe_2.avi",                        # no sentence folder (subject 6)
                 "subject 3/sadness/sentence 2/take/s3_sa_2.avi",     # one folder deeper
                 "subject 4/surprise/sentence 4/surprise4.avi"]       # name without codes
    for relative in regular + irregular:
        clip(source, relative)
    clip(source, "subject 4/surprise/sentence 1/s4_di_1.avi")         # folder and name disagree
    clip(source, "subject 7/anger/sentence 1/s7_xx_1.avi")            # unknown code
    (source / "subject 1" / "anger" / "Thumbs.db").write_bytes(b"\0")

    frame = import_dataset("enterface", source, home.inbox / "ent")
    check_contract(frame, home.inbox / "ent", "enterface")
    rows = frame.set_index("path")
    assert set(rows.index) == set(regular + irregular)
    assert rows.loc["subject 6/fear/s6_fe_2.avi", ["speaker", "emotion", "sentence"]].tolist() == [
        "6", "fear", 2]
    assert rows.loc["subject 4/surprise/sentence 4/surprise4.avi", ["speaker", "sentence"]].tolist() == ["4", 4]
    assert skipped(frame) == {
        "subject 4/surprise/sentence 1/s4_di_1.avi":
            "folders and file name disagree on the emotion: disgust, surprise",
        "subject 7/anger/sentence 1/s7_xx_1.avi": "unknown emotion code 'xx' in the file name",
        "subject 1/anger/Thumbs.db": "not an .avi video"}
    notes = frame.attrs["import"]["notes"]
    assert notes == [
        "imported despite an irregular path (2 videos): layout is not subject N/<emotion>/sentence K/",
        "imported despite an irregular path (1 videos): file name is not sN_EE_K.avi"]
    accepted(home.inbox / "ent", home, 6)


def test_mafw_clips_and_single_label_file(tmp_path: Path, clip, home: Paths) -> None:
    source = tmp_path / "MAFW"
    for stem in ("00001", "00002", "00003", "00004", "00005"):
        clip(source, f"clips/{stem}.mp4")
    (source / "caption-label").mkdir()
    (source / "caption-label" / "single_label.txt").write_text(
        "00001.mp4  anger  <br>一个男人在说话。 <br> A man speaks excitedly.\n"
        "00002.mp4\thelplessness\t<br>她叹气。\t<br>She sighs.\n"
        "00003.mp4  happy\n"
        "00004.mp4  joy\n"
        "09999.mp4  fear\n", encoding="utf-8")
    frame = import_dataset("mafw", source, home.inbox / "mafw")
    check_contract(frame, home.inbox / "mafw", "mafw")
    assert list(frame["speaker"]) == ["00001", "00002", "00003"]
    assert list(frame["emotion"]) == ["anger", "helplessness", "happiness"]
    assert frame["caption"][0] == "一个男人在说话。 / A man speaks excitedly."
    assert (frame["arousal"][1], frame["valence"][1]) == (-0.3, -0.6)
    assert skipped(frame) == {"clips/00004.mp4": "label 'joy' is not one of the 11 MAFW classes",
                              "clips/00005.mp4": "not in single_label.txt (no single-emotion label)",
                              "single_label.txt: 09999": "labelled clip has no video file"}
    accepted(home.inbox / "mafw", home, 3)


def test_ravdess_codes_modality_and_actor_folders(tmp_path: Path, clip, home: Paths) -> None:
    source = tmp_path / "RAVDESS"
    clip(source, "Actor_01/01-01-05-02-01-01-01.mp4")   # anger, strong, speech
    clip(source, "Actor_02/01-02-02-01-02-02-02.mp4")   # calm, normal, song
    clip(source, "Actor_02/01-01-01-01-01-01-02.mp4")   # neutral
    clip(source, "Actor_01/02-01-03-01-01-01-01.mp4", audio=False)  # video-only take
    clip(source, "Actor_02/01-01-08-01-01-01-01.mp4")   # actor 01's file in actor 02's folder
    frame = import_dataset("ravdess", source, home.inbox / "rav")
    check_contract(frame, home.inbox / "rav", "ravdess")
    rows = frame.set_index("path")
    strong = rows.loc["Actor_01/01-01-05-02-01-01-01.mp4"]
    assert strong[["speaker", "emotion", "intensity", "sex"]].tolist() == ["01", "anger", 1.5, "male"]
    assert (strong["arousal"], strong["valence"]) == (1.0, -0.6)  # 0.8 x 1.5 clipped to 1
    song = rows.loc["Actor_02/01-02-02-01-02-02-02.mp4"]
    assert (song["emotion"], song["vocal_channel"], song["statement"], song["repetition"], song["sex"]) == (
        "calm", "song", "Dogs are sitting by the door", 2, "female")
    assert skipped(frame) == {
        "Actor_01/02-01-03-01-01-01-01.mp4": "modality 02 (video) not selected",
        "Actor_02/01-01-08-01-01-01-01.mp4": "file name says actor 01 but its folder is another actor's"}
    accepted(home.inbox / "rav", home, 3)


def test_ravdess_speech_only_folder_imports_its_audio_by_default(tmp_path: Path, clip, home: Paths) -> None:
    source = tmp_path / "Audio_Speech_Actors_01-24"
    clip(source, "Actor_03/03-01-04-02-01-01-03.wav", video=False)   # sadness, strong
    clip(source, "Actor_04/03-01-01-01-02-01-04.wav", video=False)   # neutral
    frame = import_dataset("ravdess", source, home.inbox / "rav")
    assert sorted(zip(frame["speaker"], frame["emotion"], frame["modality"], frame["sex"])) == [
        ("03", "sadness", "audio", "male"), ("04", "neutral", "audio", "female")]
    assert skipped(frame) == {}


def test_emodb_names_in_any_folder(tmp_path: Path, clip, home: Paths) -> None:
    source = tmp_path / "emodb"
    for relative in ("wav/03a01Wa.wav", "wav/08b02Lb.wav", "13a05Ec.wav"):
        clip(source, relative, video=False)
    clip(source, "wav/03a01Xa.wav", video=False)
    (source / "erkennung.txt").write_text("notes", encoding="utf-8")
    frame = import_dataset("emodb", source, home.inbox / "emo")
    check_contract(frame, home.inbox / "emo", "emodb")
    assert list(frame["path"]) == ["13a05Ec.wav", "wav/03a01Wa.wav", "wav/08b02Lb.wav"]
    assert list(frame["speaker"]) == ["13", "03", "08"]
    assert list(frame["emotion"]) == ["disgust", "anger", "boredom"]
    assert list(frame["sex"]) == ["female", "male", "female"] and list(frame["text"]) == ["a05", "a01", "b02"]
    assert skipped(frame) == {"erkennung.txt": "name is not SSTTTEV.wav",
                              "wav/03a01Xa.wav": "unknown emotion code X"}
    accepted(home.inbox / "emo", home, 3)


def test_csv_mapping_of_a_users_folder(tmp_path: Path, clip, home: Paths) -> None:
    source = tmp_path / "mine"
    for relative in ("day1/a.mp4", "day1/b.mp4", "c.mp4", "d.mp4"):
        clip(source, relative)
    clip(tmp_path, "outside.mp4")
    (source / "meta.csv").write_text(
        "file,label,actor,gender,dataset,valence\n"
        "day1/a.mp4,H,p1,f,old,0.5\n"
        "day1/b.mp4,sad,p1,f,old,\n"
        "c.mp4,S,p2,m,old,\n"
        "d.mp4,Q,p2,m,old,\n"
        "../outside.mp4,H,p3,m,old,\n"
        "missing.mp4,H,p3,m,old,\n"
        "c.mp4,S,p2,m,old,\n"
        "d.mp4,H,p2,m,old,2.0\n", encoding="utf-8")
    frame = import_dataset("csv", source, home.inbox / "mine", dataset="my-corpus", label_file="meta.csv",
                           columns=parse_mapping("path=file,emotion=label,speaker=actor,valence=valence"),
                           emotions=parse_mapping("H=happiness,S=sadness"))
    assert list(frame.columns[:7]) == CONTRACT
    assert list(frame["path"]) == ["day1/a.mp4", "day1/b.mp4", "c.mp4"]
    assert list(frame["emotion"]) == ["happiness", "sadness", "sadness"]
    assert list(frame["valence"]) == [0.5, -0.7, -0.7]  # given where present, else the table
    assert list(frame["gender"]) == ["f", "f", "m"] and list(frame["source_dataset"]) == ["old"] * 3
    assert skipped(frame) == {"meta.csv:5": "emotion 'Q' is not mapped to the canonical vocabulary",
                              "meta.csv:6": "path is empty or contains '..'",
                              "meta.csv:7": "no such file",
                              "meta.csv:8": "path is listed more than once",
                              "meta.csv:9": "valence '2.0' is not a number in [-1.0, 1.0]"}
    accepted(home.inbox / "mine", home, 3)
    with pytest.raises(ValueError, match=r"lacks speaker \(column 'speaker'\)"):
        import_dataset("csv", source, tmp_path / "x", dataset="d", label_file="meta.csv",
                       columns={"path": "file", "emotion": "label"})
    with pytest.raises(ValueError, match="not canonical emotions"):
        import_dataset("csv", source, tmp_path / "x", dataset="d", label_file="meta.csv", emotions={"H": "joy"})


def test_media_are_copied_or_hard_linked_and_never_touched(tmp_path: Path, clip) -> None:
    source = tmp_path / "emodb"
    original = clip(source, "03a01Wa.wav", video=False)
    before = (original.read_bytes(), original.stat().st_mtime_ns)
    seen = []
    copied = import_dataset("emodb", source, tmp_path / "copied", progress=lambda done, total: seen.append(done))
    assert seen == [1]
    linked = import_dataset("emodb", source, tmp_path / "linked", link=True)
    assert (copied.attrs["import"]["copied"], linked.attrs["import"]["linked"]) == (1, 1)
    assert os.stat(tmp_path / "linked" / "03a01Wa.wav").st_ino == original.stat().st_ino
    assert os.stat(tmp_path / "copied" / "03a01Wa.wav").st_ino != original.stat().st_ino
    assert (original.read_bytes(), original.stat().st_mtime_ns) == before
    record = json.loads((tmp_path / "linked" / IMPORT_RECORD).read_text())
    assert (record["adapter"], record["clips"], record["options"]) == ("emodb", 1, {"link": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copied", "emodb", "linked"]  # no staging left


@pytest.mark.parametrize("call, error", [
    (lambda s, o: import_dataset("timit", s, o), "unknown adapter 'timit'"),
    (lambda s, o: import_dataset("emodb", s, o, modality="audio"), "emodb has no option modality"),
    (lambda s, o: import_dataset("ravdess", s, o, modality="3d"), "must be one of auto, full-av, video, audio"),
    (lambda s, o: import_dataset("csv", s, o, label_file="x.csv"), "needs a dataset name"),
    (lambda s, o: import_dataset("emodb", s, o, dataset="../up"), "dataset name '../up'"),
    (lambda s, o: import_dataset("emodb", s, s / "inside"), "must not contain each other"),
    (lambda s, o: import_dataset("emodb", s / "nope", o), "corpus folder not found"),
    (lambda s, o: import_dataset("ravdess", s, o), "no usable clips"),
])
def test_bad_imports_fail_before_writing_anything(tmp_path: Path, clip, call, error) -> None:
    source = tmp_path / "src"
    clip(source, "03a01Wa.wav", video=False)
    with pytest.raises((ValueError, OSError), match=error):
        call(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    assert [p.name for p in source.iterdir()] == ["03a01Wa.wav"]


def test_an_existing_batch_folder_is_never_overwritten(tmp_path: Path, clip) -> None:
    source = tmp_path / "src"
    clip(source, "03a01Wa.wav", video=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="never overwrites"):
        import_dataset("emodb", source, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_every_adapter_documents_its_options() -> None:
    assert sorted(ADAPTERS) == ["crema-d", "csv", "emodb", "enterface", "mafw", "ravdess"]
    parsers = {}
    for adapter in ADAPTERS.values():
        assert adapter.description and all(option.help for option in adapter.options.values())
        assert not set(adapter.options) & set(COMMON_OPTIONS)
        for name, option in adapter.options.items():  # one command-line flag per name serves every adapter
            assert parsers.setdefault(name, (option.parse, option.flag)) == (option.parse, option.flag)


CORPUS_EMOTIONS = {"crema-d": set(crema_d.EMOTIONS.values()), "enterface": set(enterface.EMOTIONS.values()),
                   "mafw": set(mafw.CLASSES), "ravdess": set(ravdess.EMOTIONS.values()),
                   "emodb": set(emodb.EMOTIONS.values())}


@pytest.mark.parametrize("corpus", list(CORPUS_EMOTIONS))
def test_each_corpus_suite_extends_labels_with_the_adapters_emotions(corpus: str) -> None:
    assert suite_for(corpus) == corpus
    suite = full_suite(corpus)
    labels = full_suite("labels")["expectations"]
    assert suite["expectations"][:len(labels)] == labels
    (emotions,) = [e["kwargs"]["value_set"] for e in suite["expectations"][len(labels):]
                   if e["kwargs"]["column"] == "emotion"]
    assert set(emotions) == CORPUS_EMOTIONS[corpus] and set(emotions) <= set(EMOTIONS)
    assert all(e["meta"]["reason"] for e in suite["expectations"])


def test_corpus_rules_apply_by_dataset_name(tmp_path: Path, clip) -> None:
    assert suite_for("my-corpus") == suite_for(None) == suite_for("../emodb") == "labels"
    batch = tmp_path / "b"
    clip(batch, "03a01Wa.wav", video=False)
    clip(batch, "03a01Wb.mp4", audio=False)
    (batch / "labels.csv").write_text("path,dataset,speaker,emotion\n03a01Wa.wav,emodb,03,calm\n"
                                      "03a01Wb.mp4,emodb,03,anger\n", encoding="utf-8")
    report = validate_batch(batch)
    assert report.suite == "emodb" and "suite: expectations/emodb.json" in report.to_markdown()
    reasons = {(f.row, f.reason.split(":")[0]) for f in report.failures}
    assert reasons == {(0, "EmoDB has seven emotions"), (1, "every EmoDB clip is speech audio")}
    (batch / "labels.csv").write_text("path,dataset,speaker,emotion\n03a01Wa.wav,other,03,calm\n"
                                      "03a01Wb.mp4,other,03,anger\n", encoding="utf-8")
    assert validate_batch(batch).success


@pytest.mark.slow
def test_real_emodb_is_accepted_whole(tmp_path: Path, home: Paths) -> None:
    frame = import_dataset("emodb", shared_data("emodb"), home.inbox / "emodb", link=True)
    assert (len(frame), frame["speaker"].nunique(), frame["emotion"].nunique()) == (339, 7, 7)
    assert frame.attrs["import"]["skipped"] == []
    stored = accepted(home.inbox / "emodb", home, 339)
    assert sorted(stored["speaker"].unique()) == ["03", "08", "09", "10", "11", "12", "13"]
    assert set(stored["emotion"]) == set(emodb.EMOTIONS.values())
    folds = speaker_folds(stored["speaker"], stored["emotion"], k=7, seed=0)
    tested = [set(stored["speaker"].iloc[test]) for _, test in folds]
    assert all(len(s) == 1 for s in tested) and set().union(*tested) == set(stored["speaker"])
    for train, test in folds:
        assert not set(stored["speaker"].iloc[train]) & set(stored["speaker"].iloc[test])
