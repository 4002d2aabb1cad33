"""`ratspain-bench frames`: face frames from videos, at most N a minute (the paper's five), sharp, no near-duplicates."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .common import command


def add_parser(sub) -> None:
    p = command(sub, "frames", "extract face frames from videos into a manifest that `predict` scores", [
        "ratspain-bench frames rat1_pre.mp4 --subject rat1 --session pre --out frames/",
        "ratspain-bench frames --sidecar videos/videos.csv --out frames/       # video,subject,session,... per video",
        "ratspain-bench frames cage.mp4 --crop 20,0,120,120 --per-minute 10 --out frames/",
        "ratspain-bench frames --sidecar clips/videos.csv --faces dlc:clips/keypoints --out frames/   # the face found per frame"],
        description="Decodes each video once (PyAV) and keeps at most --per-minute frames of every minute, one per slot of "
                    "60/N s: the first frame of the slot that is sharp enough (variance of the Laplacian, --min-sharpness) "
                    "and no near-duplicate of a kept frame (the dHash + pHash check of `data check`). Writes JPEGs and "
                    "DIR/manifest.csv (path,subject,session,time_s,sharpness,video + the sidecar's columns). A video that "
                    "cannot be decoded is one line and the others go on; a killed run resumes.")
    p.add_argument("videos", metavar="VIDEO", nargs="*", type=Path, help="video files (default: every video of --sidecar)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--sidecar", type=Path, help="CSV video,subject,session,... naming each video (paths relative to it)")
    p.add_argument("--subject", help="the animal of every video given (without --sidecar: default the file name)")
    p.add_argument("--session", help="the session of every video given (e.g. pre, post)")
    p.add_argument("--per-minute", type=int, default=5, help="the most frames kept per minute of video (default 5, the paper's rule)")
    p.add_argument("--min-sharpness", type=float, default=None,
                   help="variance of the Laplacian below which a frame is blurred (default 60: see the video docs)")
    p.add_argument("--crop", help="x,y,w,h in frame pixels, applied before judging and saving (the same as --faces fixed:x,y,w,h)")
    p.add_argument("--faces", metavar="SOURCE",
                   help="where the face is on each frame: dlc:PATH (DeepLabCut CSV), sleap:PATH (SLEAP analysis .h5), PATH a file "
                        "or a folder of <video>.csv/.h5; or fixed:x,y,w,h. Keypoint sources crop each kept frame to the square "
                        "around its face and add box_x,box_y,box_w,box_h,pose_yaw,pose_roll,pose_bin to the manifest")
    p.add_argument("--keypoints", metavar="MAP", help="the file's body parts for the face: nose=...,left_eye=...,right_eye=...,"
                                                      "left_ear=...,right_ear=... (default: common names)")
    p.add_argument("--min-likelihood", type=float, default=0.6, help="keypoints below this likelihood are ignored (default 0.6)")
    p.add_argument("--track", type=int, default=None, help="sleap: the track of the animal (default: the file's only track)")
    p.add_argument("--min-face", type=int, default=None, help="a face smaller than this (px, its box's side) is not scorable (default 32)")
    p.add_argument("--margin", type=float, default=None,
                   help="a found face is cropped to its box grown by this share of its side on each side (default 0.17)")
    p.add_argument("--max-yaw", type=float, default=None,
                   help="a head turned further than this (degrees, from keypoints) is not scorable (default 60)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def parse_crop(text: str | None):
    if text is None:
        return None
    try:
        crop = tuple(int(v) for v in text.split(","))
    except ValueError:
        crop = ()
    if len(crop) != 4:
        raise InputError(f"--crop {text!r}: expected x,y,w,h (four integers)")
    return crop


def run(args) -> int:
    from .. import api
    from ..video.frames import quality_lines

    if not args.videos and args.sidecar is None:
        raise InputError("frames: give VIDEO files or --sidecar CSV")
    if args.crop and args.faces:
        raise InputError("frames: give --crop or --faces, not both (--crop x,y,w,h is --faces fixed:x,y,w,h)")
    manifest = api.frames(args.videos or None, args.out, per_minute=args.per_minute, min_sharpness=args.min_sharpness,
                          crop=parse_crop(args.crop), subject=args.subject, session=args.session, sidecar=args.sidecar,
                          progress=not args.quiet, faces=args.faces, keypoints=args.keypoints, min_likelihood=args.min_likelihood,
                          track=args.track, min_face=args.min_face, max_yaw=args.max_yaw,
                          margin=args.margin)
    for line in quality_lines(manifest.parent / "quality.csv"):
        print(line)
    n = len(manifest.read_text(encoding="utf-8").splitlines()) - 1
    print(f"wrote {n} frames -> {manifest} (every frame examined, with why it is or is not scorable: quality.csv)")
    return 0
