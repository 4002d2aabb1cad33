"""`detector train` and `detector predict`: a face detector trained on a lab's own COCO boxes."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .common import add_runs_dir_option, command

SETTINGS = ("image_size", "epochs", "batch_size", "lr", "seed", "min_score")  # `video.detector.Settings`, given ones


def add_parser(subparsers) -> None:
    p = command(subparsers, "detector", "train a face detector on your own boxes (COCO), or find faces with one", [
        "ratspain-bench detector train --boxes clips/faces.json --out face-detector/",
        "ratspain-bench detector predict face-detector/ --images frames/ --out boxes.json"])
    sub = p.add_subparsers(dest="detector_command", required=True, metavar="SUBCOMMAND")

    t = command(sub, "train", "train on COCO boxes, leave-one-animal-out first; save the model folder", [
        "ratspain-bench detector train --boxes clips/faces.json --out face-detector/        # synth --video's truth",
        "ratspain-bench detector train --boxes cvat/annotations/instances_default.json --images cvat/images --out fd/",
        "ratspain-bench detector train --boxes clips/faces.json --holdout control3,treated3 --out fd/  # one fold"],
        description="Reads COCO boxes (CVAT, Label Studio; at most one face per image; an image entry with `video` and "
                    "`frame` is that frame of that video), measures the detector leave-one-animal-out (each animal held "
                    "out once: AP@0.5, mean IoU, share with IoU >= 0.7), then trains it on every animal and saves the "
                    "model folder (weights, detector.json) and an MLflow run (experiment ratspain-detector). The model: "
                    "FCOS on EfficientNet-Lite0 features (ImageNet weights that install offline, the lite0 extra). "
                    "The animal of an image: its `subject` or `animal` key, else --animal, else its first folder.")
    t.add_argument("--boxes", type=Path, required=True, metavar="COCO.json", help="COCO JSON with images and boxes")
    t.add_argument("--images", type=Path, metavar="DIR", help="where the file_names are (default: the COCO file's folder)")
    t.add_argument("--out", type=Path, required=True, metavar="MODEL", help="model folder to write (must not exist or be empty)")
    t.add_argument("--animal", metavar="REGEX", help="the animal of an image: the first group of REGEX in its file_name")
    t.add_argument("--holdout", metavar="A,B", help="one fold only: train without these animals, measure on them, save that model")
    t.add_argument("--no-eval", action="store_true", help="no leave-one-animal-out: only the model on every animal")
    t.add_argument("--every", type=int, default=1, metavar="N",
                   help="only every N-th image of the COCO file (a box on every video frame: neighbours are near-copies)")
    t.add_argument("--image-size", type=int, help="the images' longer side for the model, px (default 128)")
    t.add_argument("--epochs", type=int, help="default 12")
    t.add_argument("--batch-size", type=int, help="default 8")
    t.add_argument("--lr", type=float, help="AdamW's peak learning rate (one-cycle; default 0.001)")
    t.add_argument("--seed", type=int, help="default 0")
    t.add_argument("--min-score", type=float, help="a box scoring no more is no face (default 0.5)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    add_runs_dir_option(t)
    t.set_defaults(func=run_train)

    d = command(sub, "predict", "the best face box of each image, as COCO JSON (mAP and IoU where the input has boxes)", [
        "ratspain-bench detector predict face-detector/ --images frames/ --out boxes.json",
        "ratspain-bench detector predict face-detector/ --boxes clips/faces.json --out found.json   # scored"],
        description="Writes --out as COCO JSON: the input's images and one annotation per face found (bbox x, y, w, h "
                    "in the image's pixels, score); importable into CVAT or Label Studio for correction. Where --boxes "
                    "has true boxes, prints AP@0.5, mean IoU and the share with IoU >= 0.7.")
    d.add_argument("model", type=Path, metavar="MODEL", help="a model folder of `detector train`")
    d.add_argument("--boxes", type=Path, metavar="COCO.json", help="the images of a COCO file (its boxes: the truth)")
    d.add_argument("--images", type=Path, metavar="DIR", help="a folder of images, or where --boxes' file_names are")
    d.add_argument("--animal", metavar="REGEX", help="as for train (for --boxes)")
    d.add_argument("--min-score", type=float, help="another threshold than the model's")
    d.add_argument("--every", type=int, default=1, metavar="N", help="only every N-th image")
    d.add_argument("--out", type=Path, required=True, metavar="FILE", help="COCO JSON to write")
    d.set_defaults(func=run_predict)


def run_train(args) -> int:
    from .. import api

    holdout = [a.strip() for a in args.holdout.split(",") if a.strip()] if args.holdout else []
    if holdout and args.no_eval:
        raise InputError("detector train: --holdout is one fold of the evaluation; drop --no-eval or --holdout")
    settings = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    meta = api.detector_train(args.boxes, args.images, out=args.out, holdout=holdout, folds=not args.no_eval,
                              animal=args.animal, every=args.every, runs_dir=args.runs_dir, tracking_uri=args.tracking_uri,
                              quiet=args.quiet,
                              **settings)
    per_animal, mean = meta["metrics"]["per_animal"], meta["metrics"]["mean"]
    if per_animal:
        print(f"{'held out':<16} {'images':>6} {'AP@0.5':>7} {'mean IoU':>8} {'IoU>=0.7':>8}")
        for a, m in per_animal.items():
            print(f"{a or '(none)':<16} {m['images']:>6} {m['ap50']:>7.3f} {m['mean_iou']:>8.3f} {m['iou70']:>8.1%}")
        print(f"{'mean':<16} {'':>6} {mean['ap50']:>7.3f} {mean['mean_iou']:>8.3f} {mean['iou70']:>8.1%}")
    on = f"{meta['images']} images of {len(meta['animals'])} animals"
    print(f"model: {args.out} (trained on {on})   MLflow: run {meta['mlflow_run']} in {meta['tracking_uri']}")
    return 0


def run_predict(args) -> int:
    from .. import api

    if args.boxes is None and args.images is None:
        raise InputError("detector predict: give --boxes COCO.json or --images DIR")
    source, images_dir = (args.boxes, args.images) if args.boxes is not None else (args.images, None)
    res = api.detector_predict(args.model, source, args.out, images_dir=images_dir, animal=args.animal, min_score=args.min_score,
                              every=args.every)
    print(f"{res['found']} faces found in {res['images']} images -> {res['out']}")
    m = res["metrics"]
    if m is not None:
        print(f"AP@0.5 {m['ap50']:.3f}   mean IoU {m['mean_iou']:.3f}   IoU >= 0.7: {m['iou70']:.1%} of {m['faces']} faces")
    return 0
