"""From video to animals: cage videos -> face frames -> a trained model's scores -> per-animal summaries -> groups.

- `synth.render_videos`: synthetic pre/post clips of the replica's rats, with a sidecar and the frames' truth.
- `frames.extract`: at most N sharp, distinct frames per minute of video, and their manifest (resumable).
- `summary.join` / `summary.summarise`: `predict`'s scores joined to the manifest, summarised per animal and session.
- `groups.compare`: the groups compared with the animal as the unit (permutation tests, mixed model, effect size).
- `report.write_report`: what `predict --by` writes (`write_outputs`: summary and frame tables, time courses per
  animal, the group comparison, one self-contained HTML report).
- `overlay.write_overlays`: each video annotated with the face box, why a frame was not scorable and the latest score.
"""
