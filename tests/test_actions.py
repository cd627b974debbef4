"""The HMDB51 / UCF-101 / Kinetics-400 loaders on miniature trees in the official layouts.

The trees copy the quirks of the real files: HMDB51's per-class split files with 0/1/2 ids and
trailing spaces, UCF-101's CRLF lists with labels only in trainlists and a file-name case that
differs from the folder (v_HandStandPushups in HandstandPushups/), Kinetics CSVs with and without
is_cc, validate.csv vs val.csv, and labels spelled with brackets.
"""

import json

import av
import numpy as np
import pytest

import reasonact  # noqa: F401  (first, as everywhere: it patches torchvision on CPU-only torch)
from reasonact.data.benchmarks import (
    CLASSES_DIR,
    MAX_LISTED,
    MissingVideosError,
    SplitError,
    build_manifest,
    load_classes,
    write_manifest,
)
from reasonact.data.manifest import read_manifest


def write_clip(path, codec="mpeg4"):
    """A real 4-frame 32x32 clip, so the one clip we decode proves the tree is a usable dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def touch(path):
    """A zero-byte stand-in where only existence matters (the loaders never decode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


# ---------------------------------------------------------------- HMDB51
# ids per fold: 1 train, 2 test, 0 unused. Three videos per class, the last one unused in fold 1.
HMDB = {
    "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0", "Brushing_Hair_h_nm_np1_le_goo_1", "hair_x_2"],
    "sword_exercise": ["Sword_Exercise_u_cm_np1_fr_med_0", "sword_kata_f_nm_np1_ri_bad_1", "sword_x_2"],
}
HMDB_IDS = {1: ["1", "2", "0"], 2: ["2", "1", "1"], 3: ["1", "1", "2"]}


@pytest.fixture
def hmdb(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls, videos in HMDB.items():
        for k, ids in HMDB_IDS.items():
            # The official files end every line with a space.
            lines = "".join(f"{v}.avi {i} \n" for v, i in zip(videos, ids))
            (splits / f"{cls}_test_split{k}.txt").write_text(lines)
        for v in videos:
            touch(root / cls / f"{v}.avi")
    write_clip(root / "brush_hair" / f"{HMDB['brush_hair'][0]}.avi")
    return root, splits


@pytest.mark.parametrize("fold", [1, 2, 3])
@pytest.mark.parametrize("subset,wanted", [("train", "1"), ("test", "2")])
def test_hmdb51_folds(hmdb, fold, subset, wanted):
    root, splits = hmdb
    records, report = build_manifest("hmdb51", root, splits, fold=fold, subset=subset)
    n = HMDB_IDS[fold].count(wanted) * len(HMDB)
    assert (report["listed"], report["found"], report["missing"]) == (n, n, 0)
    expected = {
        str(root / cls / f"{v}.avi")
        for cls, videos in HMDB.items()
        for v, i in zip(videos, HMDB_IDS[fold])
        if i == wanted
    }
    assert {r["video"] for r in records} == expected
    rec = records[0]
    assert rec["dataset"] == "hmdb51" and rec["split"] == subset and rec["fold"] == fold
    assert rec["library_key"] == f"hmdb51/{rec['label']}" and rec["label"] in load_classes("hmdb51")
    assert len(report["split_files"]) == len(HMDB)


def test_hmdb51_parent_folder_manifest_roundtrip_and_decode(hmdb, tmp_path):
    root, splits = hmdb
    # The parent of testTrainMulti_7030_splits works too; a manifest written from it reads back.
    records, _ = build_manifest("hmdb51", root, splits.parent, fold=1, subset="train")
    back = read_manifest(write_manifest(records, tmp_path / "m.jsonl"))
    assert back == records
    first = next(r for r in back if r["video"].endswith(f"{HMDB['brush_hair'][0]}.avi"))
    with av.open(first["video"]) as f:
        assert sum(1 for _ in f.decode(video=0)) == 4


def test_hmdb51_missing_videos_counted_listed_and_strict(hmdb):
    root, splits = hmdb
    gone = root / "sword_exercise" / f"{HMDB['sword_exercise'][0]}.avi"
    gone.unlink()
    records, report = build_manifest("hmdb51", root, splits, fold=1, subset="train")
    assert (report["listed"], report["found"], report["missing"]) == (2, 1, 1)
    assert report["missing_videos"] == [str(gone)]
    assert str(gone) not in {r["video"] for r in records}
    with pytest.raises(MissingVideosError) as e:
        build_manifest("hmdb51", root, splits, fold=1, subset="train", strict=True)
    assert str(gone) in str(e.value) and "sword_exercise_test_split1.txt:1" in str(e.value)
    # Fold 1's test subset does not list the missing video: strict passes.
    build_manifest("hmdb51", root, splits, fold=1, subset="test", strict=True)


def test_hmdb51_missing_list_is_capped(hmdb):
    root, splits = hmdb
    lines = "".join(f"extra_{i}.avi 1\n" for i in range(MAX_LISTED + 5))
    (splits / "brush_hair_test_split1.txt").write_text(lines)
    _, report = build_manifest("hmdb51", root, splits, fold=1, subset="train")
    assert report["missing"] == MAX_LISTED + 5 and len(report["missing_videos"]) == MAX_LISTED
    with pytest.raises(MissingVideosError, match="and 5 more"):
        build_manifest("hmdb51", root, splits, fold=1, subset="train", strict=True)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("brush_hair_test_split1.txt", "a.avi 1\nb.avi 3\n", r"brush_hair_test_split1.txt:2: id must be"),
        ("brush_hair_test_split1.txt", "a.avi 1\n\nb.avi\n", r"brush_hair_test_split1.txt:3: expected"),
        ("brush_hair_test_split1.txt", "a.avi 1 2\n", r"brush_hair_test_split1.txt:1: expected"),
        (
            "brushing_test_split1.txt",
            "a.avi 1\n",
            r"brushing_test_split1.txt: unknown HMDB51 class 'brushing'",
        ),
    ],
)
def test_hmdb51_bad_split_files(hmdb, name, content, match):
    root, splits = hmdb
    (splits / name).write_text(content)
    with pytest.raises(SplitError, match=match):
        build_manifest("hmdb51", root, splits, fold=1, subset="train")


@pytest.mark.parametrize("fold", [0, 4, True, "1"])
def test_fold_out_of_range(hmdb, fold):
    with pytest.raises(SplitError, match="fold must be 1, 2 or 3"):
        build_manifest("hmdb51", *hmdb, fold=fold)


def test_bad_arguments(hmdb, tmp_path):
    root, splits = hmdb
    with pytest.raises(SplitError, match="subset 'val' is not valid for hmdb51"):
        build_manifest("hmdb51", root, splits, subset="val")
    with pytest.raises(SplitError, match="unknown dataset 'hmdb'"):
        build_manifest("hmdb", root, splits)
    with pytest.raises(SplitError, match="dataset root not found"):
        build_manifest("hmdb51", tmp_path / "nowhere", splits)
    with pytest.raises(SplitError, match="split folder not found"):
        build_manifest("hmdb51", root, tmp_path / "nowhere")
    with pytest.raises(SplitError, match=r"no '<class>_test_split1.txt' files"):
        build_manifest("hmdb51", root, root)


# ---------------------------------------------------------------- UCF-101
UCF = {  # class -> (1-based classInd label, videos)
    "ApplyEyeMakeup": (1, ["v_ApplyEyeMakeup_g08_c01", "v_ApplyEyeMakeup_g01_c01"]),
    "Archery": (3, ["v_Archery_g08_c01", "v_Archery_g01_c01"]),
    "HandstandPushups": (37, ["v_HandStandPushups_g08_c01", "v_HandStandPushups_g01_c01"]),
}


@pytest.fixture
def ucf(tmp_path):
    root, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    official = (CLASSES_DIR / "ucf101_classInd.txt").read_text()
    (splits / "classInd.txt").write_bytes(official.replace("\n", "\r\n").encode())
    for k in (1, 2, 3):
        # Folds 1 and 3 train on g08 and test on g01, fold 2 the other way round (the real lists
        # split by group), so reading the wrong fold's file shows. CRLF endings, as shipped.
        tr, te = (1, 0) if k == 2 else (0, 1)
        train = "".join(f"{c}/{v[tr]}.avi {i}\r\n" for c, (i, v) in UCF.items())
        test = "".join(f"{c}/{v[te]}.avi\r\n" for c, (i, v) in UCF.items())
        (splits / f"trainlist0{k}.txt").write_bytes(train.encode())
        (splits / f"testlist0{k}.txt").write_bytes(test.encode())
    for c, (_, videos) in UCF.items():
        for v in videos:
            touch(root / c / f"{v}.avi")
    return root, splits


@pytest.mark.parametrize("fold", [1, 2, 3])
@pytest.mark.parametrize("subset,column", [("train", 0), ("test", 1)])
def test_ucf101_folds(ucf, fold, subset, column):
    root, splits = ucf
    records, report = build_manifest("ucf101", root, splits, fold=fold, subset=subset, strict=True)
    assert (report["listed"], report["found"], report["missing"], report["classes"]) == (3, 3, 0, 3)
    column = 1 - column if fold == 2 else column
    assert {(r["label"], r["video"]) for r in records} == {
        (c, str(root / c / f"{v[column]}.avi")) for c, (_, v) in UCF.items()
    }
    assert all(r["fold"] == fold and r["split"] == subset and r["dataset"] == "ucf101" for r in records)
    assert {r["library_key"] for r in records} == {f"ucf101/{c}" for c in UCF}
    assert report["split_files"] == [str(splits / f"{subset}list0{fold}.txt")]


def test_ucf101_missing_and_strict(ucf):
    root, splits = ucf
    gone = root / "Archery" / "v_Archery_g08_c01.avi"  # fold 2 tests on g08
    gone.unlink()
    _, report = build_manifest("ucf101", root, splits, fold=2, subset="test")
    assert (report["found"], report["missing"], report["missing_videos"]) == (2, 1, [str(gone)])
    with pytest.raises(MissingVideosError, match=r"testlist02.txt:2: .*v_Archery_g08_c01.avi"):
        build_manifest("ucf101", root, splits, fold=2, subset="test", strict=True)


@pytest.mark.parametrize(
    "name,line,match",
    [
        (
            "trainlist01.txt",
            "Archery/v_Archery_g02_c01.avi",
            r"trainlist01.txt:4: trainlist lines need a 1-based",
        ),
        (
            "trainlist01.txt",
            "Archery/v_Archery_g02_c01.avi 1",
            r"trainlist01.txt:4: label 1 is 'ApplyEyeMakeup'",
        ),
        (
            "trainlist01.txt",
            "Archery/v_Archery_g02_c01.avi 0",
            r"trainlist01.txt:4: label must be an integer",
        ),
        (
            "trainlist01.txt",
            "Archery/v_Archery_g02_c01.avi x",
            r"trainlist01.txt:4: label must be an integer",
        ),
        (
            "testlist01.txt",
            "Archery/v_Archery_g02_c01.avi 37",
            r"testlist01.txt:4: label 37 is 'HandstandPushups'",
        ),
        ("testlist01.txt", "v_Archery_g02_c01.avi", r"testlist01.txt:4: expected '<Class>/<video>.avi"),
        ("testlist01.txt", "Archery/v_Archery_g02_c01.avi 3 3", r"testlist01.txt:4: expected"),
        (
            "testlist01.txt",
            "Archers/v_Archers_g02_c01.avi",
            r"testlist01.txt:4: unknown UCF-101 class 'Archers'",
        ),
    ],
)
def test_ucf101_bad_lines(ucf, name, line, match):
    root, splits = ucf
    with (splits / name).open("ab") as f:
        f.write(f"{line}\r\n".encode())
    subset = name.split("list")[0]
    with pytest.raises(SplitError, match=match):
        build_manifest("ucf101", root, splits, fold=1, subset=subset)


def test_ucf101_class_index_must_match(ucf):
    root, splits = ucf
    ind = splits / "classInd.txt"
    ind.write_text(ind.read_text().replace("3 Archery", "3 Archer"))
    with pytest.raises(SplitError, match=r"classInd.txt: class 3 is 'Archer'"):
        build_manifest("ucf101", root, splits)
    ind.unlink()  # without a local copy, the official list in data/classes is used
    assert build_manifest("ucf101", root, splits)[1]["found"] == 3
    (splits / "testlist03.txt").unlink()
    with pytest.raises(SplitError, match="testlist03.txt: split file not found"):
        build_manifest("ucf101", root, splits, fold=3, subset="test")


# ---------------------------------------------------------------- Kinetics-400
HEADER = "label,youtube_id,time_start,time_end,split"
K400_TRAIN = [("abseiling", "--07WQ2iBlw", 1, 11), ("air drumming", "-0Dw9bh4Fcw", 14, 24)]
# The official validate.csv quotes labels with brackets; data/classes spells this one without.
K400_VAL = [
    ('"passing American football (in game)"', "0a1b2c3d4e5", 270, 280),
    ("air drumming", "_x-y", 0, 10),
]


def k400_file(split, label, yid, start, end, underscore=False):
    label = label.strip('"')
    return f"{split}/{label.replace(' ', '_') if underscore else label}/{yid}_{start:06d}_{end:06d}.mp4"


@pytest.fixture
def k400(tmp_path):
    root = tmp_path / "kinetics400"
    ann = tmp_path / "annotations"
    ann.mkdir()
    # train.csv without is_cc (the 2017 release), validate.csv with it (later re-releases).
    (ann / "train.csv").write_text(
        HEADER + "\n" + "".join(f"{lab},{y},{s},{e},train\n" for lab, y, s, e in K400_TRAIN)
    )
    rows = "".join(f"{lab},{y},{s}.0,{e},val,0\n" for lab, y, s, e in K400_VAL)
    (ann / "validate.csv").write_text(HEADER + ",is_cc\n" + rows)
    for row in K400_TRAIN:
        touch(root / k400_file("train", *row))
    for row in K400_VAL:
        touch(root / k400_file("val", *row))
    write_clip(root / k400_file("train", *K400_TRAIN[0]), codec="libx264")
    return root, ann


def test_kinetics400_train_and_val(k400):
    root, ann = k400
    records, report = build_manifest("kinetics400", root, ann, subset="train", strict=True)
    assert (report["listed"], report["found"], report["missing"]) == (2, 2, 0)
    assert records[0] == {
        "video": str(root / k400_file("train", *K400_TRAIN[0])),
        "label": "abseiling",
        "dataset": "kinetics400",
        "split": "train",
        "library_key": "kinetics400/abseiling",
        "youtube_id": "--07WQ2iBlw",
        "time_start": 1,
        "time_end": 11,
    }
    with av.open(records[0]["video"]) as f:
        assert sum(1 for _ in f.decode(video=0)) == 4
    records, report = build_manifest("kinetics400", root, ann / "validate.csv", subset="val", strict=True)
    assert report["found"] == 2 and "fold" not in records[0]
    # The bracketed CSV label maps onto the class list's spelling; the folder keeps the CSV's.
    assert records[0]["label"] == "passing American football in game"
    assert records[0]["label"] in load_classes("kinetics400")
    assert "(in game)" in records[0]["video"]


def test_kinetics400_val_csv_mirror_and_missing(k400):
    root, ann = k400
    (ann / "validate.csv").rename(ann / "val.csv")
    (root / k400_file("val", *K400_VAL[1])).unlink()
    records, report = build_manifest("kinetics400", root, ann, subset="val")
    assert (report["listed"], report["found"], report["missing"]) == (2, 1, 1)
    assert report["split_files"] == [str(ann / "val.csv")]
    assert report["missing_videos"] == [str(root / k400_file("val", *K400_VAL[1]))]
    with pytest.raises(MissingVideosError, match=r"val.csv:3: .*_x-y_000000_000010.mp4"):
        build_manifest("kinetics400", root, ann, subset="val", strict=True)
    with pytest.raises(SplitError, match="subset 'test' is not valid for kinetics400"):
        build_manifest("kinetics400", root, ann, subset="test")
    (ann / "val.csv").unlink()
    with pytest.raises(SplitError, match="no validate.csv or val.csv found"):
        build_manifest("kinetics400", root, ann, subset="val")


def test_kinetics400_pattern(k400, tmp_path):
    _, ann = k400
    # A mirror with underscored class folders and no time suffix, e.g. train/air_drumming/<id>.mp4.
    root = tmp_path / "mirror"
    for label, yid, _, _ in K400_TRAIN:
        touch(root / "train" / label.replace(" ", "_") / f"{yid}.mp4")
    records, report = build_manifest(
        "kinetics400", root, ann, pattern="{split}/{label_underscore}/{youtube_id}.mp4"
    )
    assert report["found"] == 2
    assert records[1]["video"] == str(root / "train/air_drumming/-0Dw9bh4Fcw.mp4")
    assert records[1]["label"] == "air drumming"
    _, report = build_manifest("kinetics400", root, ann)  # default pattern: nothing there
    assert report["missing"] == 2 and report["missing_videos"][0].endswith("--07WQ2iBlw_000001_000011.mp4")
    with pytest.raises(SplitError, match=r"uses \{clip\}; available: .*\{youtube_id\}"):
        build_manifest("kinetics400", root, ann, pattern="{clip}.mp4")


def test_hmdb51_pattern_for_reencoded_mirror(hmdb, tmp_path):
    _, splits = hmdb
    root = tmp_path / "hmdb_mp4"
    for cls, videos in HMDB.items():
        for v in videos:
            touch(root / cls / f"{v}.mp4")
    _, report = build_manifest(
        "hmdb51", root, splits, subset="test", strict=True, pattern="{label}/{stem}.mp4"
    )
    assert report["found"] == 2


@pytest.mark.parametrize(
    "csv_text,match",
    [
        (HEADER + "\nabseilling,abc,1,11,train\n", r"train.csv:2: unknown Kinetics-400 class 'abseilling'"),
        (
            HEADER + "\nabseiling,abc,1,11,train\nabseiling,abc,x,11,train\n",
            r"train.csv:3: time_start must be",
        ),
        (HEADER + "\nabseiling,abc,1,1.5,train\n", r"train.csv:2: time_end must be a whole number"),
        (HEADER + "\nabseiling,abc,12,11,train\n", r"train.csv:2: time_end 11 is not after"),
        (HEADER + "\nabseiling,abc,1,11\n", r"train.csv:2: expected 5 columns"),
        (HEADER + "\nabseiling,abc,1,11,train,1\n", r"train.csv:2: expected 5 columns"),
        (HEADER + "\nabseiling,,1,11,train\n", r"train.csv:2: empty youtube_id"),
        (
            "label,youtube_id,start,end,split\n",
            r"train.csv:1: header must contain .* missing time_start,time_end",
        ),
    ],
)
def test_kinetics400_bad_csv(k400, csv_text, match):
    root, ann = k400
    (ann / "train.csv").write_text(csv_text)
    with pytest.raises(SplitError, match=match):
        build_manifest("kinetics400", root, ann, subset="train")


def test_manifest_lines_are_json_with_the_contract_keys(ucf, tmp_path):
    records, _ = build_manifest("ucf101", *ucf, fold=1, subset="test")
    path = write_manifest(records, tmp_path / "ucf.jsonl")
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        assert {"video", "label", "dataset", "split", "fold", "library_key"} <= rec.keys()
